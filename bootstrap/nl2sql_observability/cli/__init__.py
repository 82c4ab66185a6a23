"""The `nl2sql-obs` command: each subcommand lives in a module of its own under this package."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Subcommand modules each expose `register(subparsers) -> None`; imported lazily so that
# `nl2sql-obs scrub` does not pay for LangGraph and `nl2sql-obs demo` does not pay for SQLite audit code.
SUBCOMMANDS: dict[str, str] = {
    "demo": "nl2sql_observability.cli.demo",
    "audit": "nl2sql_observability.cli.audit",
    "scrub": "nl2sql_observability.cli.scrub",
    "feedback": "nl2sql_observability.cli.feedback",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser; with `only`, import just that subcommand's module."""
    parser = argparse.ArgumentParser(
        prog="nl2sql-obs",
        description="nl2sql-observability: a demo NL2SQL app, the audit log of LLM calls, the scrubber.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        if only is not None and name != only:
            subparsers.add_parser(name)
            continue
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nl2sql-obs` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(only=first if first in SUBCOMMANDS else None)
    args = parser.parse_args(args_list)
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        print(f"nl2sql-obs {args.command}: error: stdout is closed; redirect it to a file", file=sys.stderr)
        return 2
    try:
        status = int(args.handler(args) or 0)
        sys.stdout.flush()
    except OSError as exc:  # the output could not be written (disk full, I/O error): one line, no traceback
        _silence_stdout()
        what = exc.filename or "writing the output"
        print(f"nl2sql-obs {args.command}: error: {what}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return status


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":
    raise SystemExit(main())
