"""`nl2sql-obs scrub`: pipe any text through the scrubber (stdin -> stdout, streaming)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from typing import Any

DESCRIPTION = """\
Read text from stdin (or FILEs), write it to stdout with secrets and personal data replaced by
[REDACTED:kind]. Streams in bounded memory with the same result as scrubbing the whole input at
once (a secret lying across a read boundary is still replaced); bytes that are not UTF-8 pass
through unchanged.
Honours OBSERVABILITY_SCRUB_IP, OBSERVABILITY_SCRUB_EXTRA_PATTERNS and OBSERVABILITY_SCRUB_ALLOW.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scrub",
        help="scrub secrets and PII from text (stdin -> stdout)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="read these instead of stdin ('-' is stdin)")
    ip = parser.add_mutually_exclusive_group()
    ip.add_argument("--no-ip", dest="ip", action="store_false", default=None, help="keep IP addresses")
    ip.add_argument("--ip", dest="ip", action="store_true", help="redact IP addresses (the default)")
    parser.set_defaults(handler=run)


def _text_in(binary: Any) -> io.TextIOWrapper:
    return io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="")


def run(args: argparse.Namespace) -> int:
    from nl2sql_observability.safetext import deep_json_problem
    from nl2sql_observability.scrubbing import ScrubConfigError, ScrubSettings, load_scrubber, scrub_stream

    deep = deep_json_problem("OBSERVABILITY_SCRUB_", os.environ)
    if deep:
        print(f"nl2sql-obs scrub: error: {deep}", file=sys.stderr)
        return 2
    if sys.stdin is None and (not args.files or "-" in args.files):
        print("nl2sql-obs scrub: error: stdin is closed; pipe text in or name FILEs", file=sys.stderr)
        return 2
    if sys.stdout is None:
        print("nl2sql-obs scrub: error: stdout is closed; redirect it to a file", file=sys.stderr)
        return 2
    try:
        scrubber = load_scrubber()
        if args.ip is not None and args.ip != scrubber.scrub_ip:
            settings = ScrubSettings(ip=args.ip)
            scrubber = settings.build()
    except ScrubConfigError as exc:
        print(f"nl2sql-obs scrub: error: {exc}", file=sys.stderr)
        return 2
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="surrogateescape", newline="")
    sources = args.files or ["-"]
    try:
        for name in sources:
            if name == "-":
                source = _text_in(sys.stdin.buffer)
            else:
                try:
                    source = _text_in(open(name, "rb"))  # noqa: SIM115 - closed below
                except OSError as exc:
                    print(f"nl2sql-obs scrub: error: cannot read {name}: {exc.strerror}", file=sys.stderr)
                    return 2
            try:
                for chunk in scrub_stream(scrubber, source):
                    out.write(chunk)
            finally:
                if name != "-":
                    source.close()
                else:
                    source.detach()
        out.flush()
    except BrokenPipeError:  # `nl2sql-obs scrub < big | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        with contextlib.suppress(ValueError):
            out.detach()
    return 0
