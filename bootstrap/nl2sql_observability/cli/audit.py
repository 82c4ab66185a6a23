"""`nl2sql-obs audit`: find the prompt behind a trace (`show`) or search the audit log (`search`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nl2sql_observability.safetext import visible_controls

EXIT_NOT_FOUND = 1
EXIT_ERROR = 2


class _CliError(Exception):
    pass


# `search` keeps the best `--limit` events in memory; SQLite's LIMIT takes a 64-bit integer.
MAX_LIMIT = 1_000_000


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= number <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{value!r} is not allowed (allowed: 1 to {MAX_LIMIT:,})")
    return number


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    from nl2sql_observability.audit.settings import default_dir

    where = default_dir()
    parser.add_argument(
        "--path",
        type=Path,
        help="the audit file (events.log; its rotated files are read too) or SQLite database "
        f"(default: OBSERVABILITY_AUDIT_PATH, else {where / 'events.log'} for the file sink,"
        f" {where / 'events.db'} for sqlite)",
    )
    parser.add_argument(
        "--sink",
        choices=("file", "sqlite"),
        help="how the log is stored (default: OBSERVABILITY_AUDIT_SINK, else file;"
        " a .db/.sqlite path means sqlite)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON event per line (for jq & co)")


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="read the audit log of LLM prompts and responses",
        description="Read the persistent, scrubbed audit log of LLM calls.",
    )
    commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    show = commands.add_parser(
        "show",
        help="every audit event of one trace",
        description="Print every audit event of a trace, oldest first, prompts and responses in full.",
    )
    show.add_argument(
        "--trace-id", required=True, help="32 hex characters, as shown in Jaeger or in a log line"
    )
    _add_source_options(show)
    show.set_defaults(handler=run_show)

    search = commands.add_parser(
        "search",
        help="filter audit events by time, tenant, node, status",
        description="Print the most recent matching events (oldest first). Times: a duration ago "
        "(90s, 30m, 24h, 7d, 2w) or ISO 8601 (2026-11-23, 2026-11-23T14:00:00Z; UTC if no offset).",
    )
    search.add_argument("--since", help="only events at or after this time (e.g. 24h)")
    search.add_argument("--until", help="only events at or before this time")
    search.add_argument("--tenant", help="tenant id")
    search.add_argument("--node", help="graph node, e.g. generate_sql")
    search.add_argument("--status", choices=("ok", "error"), help="outcome of the LLM call")
    search.add_argument("--trace-id", help="only this trace")
    search.add_argument(
        "--outcome",
        choices=(
            "answered",
            "empty_result",
            "validation_rejected",
            "sql_error",
            "timeout",
            "llm_error",
            "error",
        ),
        help="only the events of requests that ended so (nl2sql.outcome)",
    )
    search.add_argument(
        "--limit", type=_limit, default=50, help="at most this many (the most recent; default 50)"
    )
    _add_source_options(search)
    search.set_defaults(handler=run_search)


def _open(args: argparse.Namespace) -> tuple[Any, Path]:
    from nl2sql_observability.audit import AuditConfigError, load_audit_settings
    from nl2sql_observability.audit.sinks import JsonlFileSink, SqliteSink

    try:
        settings = load_audit_settings()
    except AuditConfigError as exc:
        if args.path is None:
            raise _CliError(str(exc)) from None
        settings = None
    sink_kind = args.sink
    if sink_kind is None and args.path is not None and args.path.suffix in (".db", ".sqlite", ".sqlite3"):
        sink_kind = "sqlite"
    if sink_kind is None:
        sink_kind = settings.sink if settings is not None else "file"
    if args.path is not None:
        path = args.path.expanduser()
    else:
        assert settings is not None
        path = settings.model_copy(update={"sink": sink_kind}).resolved_path()
    if path.is_dir():
        raise _CliError(
            f"--path {path} is a directory; give the log file (events.log) or database (events.db)"
        )
    # A reader never writes: rotated files are found by listing, whatever backup count wrote them.
    return (SqliteSink(path) if sink_kind == "sqlite" else JsonlFileSink(path)), path


def _read(
    args: argparse.Namespace, read: Callable[[Any, list[str]], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    import sqlite3

    from nl2sql_observability.audit.sinks import AuditPathError, CorruptLogError

    sink, path = _open(args)
    problems: list[str] = []
    try:
        events = read(sink, problems)
    except FileNotFoundError:
        raise _CliError(
            f"no audit log at {path} (set OBSERVABILITY_AUDIT_PATH / OBSERVABILITY_AUDIT_SINK"
            " or pass --path/--sink)"
        ) from None
    except CorruptLogError as exc:
        raise _CliError(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise _CliError(f"{path} is not a readable audit database: {exc}") from None
    except AuditPathError as exc:
        raise _CliError(exc.strerror) from None
    except OSError as exc:
        raise _CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        sink.close()
    bad_files = [p for p in problems if p.endswith("; skipped")]  # one per file: all shown
    bad_lines = [p for p in problems if p not in bad_files]
    for problem in bad_files + bad_lines[:5]:
        print(f"nl2sql-obs audit: warning: {visible_controls(problem)}", file=sys.stderr)
    if len(bad_lines) > 5:
        print(f"nl2sql-obs audit: warning: … and {len(bad_lines) - 5} more such lines", file=sys.stderr)
    return events


def _indent(text: str | None) -> str:
    if not text:
        return "    (empty)"
    return textwrap.indent(visible_controls(text.rstrip("\n")), "    ", lambda _line: True)


def _summary(event: dict[str, Any]) -> str:
    tokens = event.get("tokens") or {}
    parts = [
        str(event.get("timestamp")),
        f"trace={event.get('trace_id') or '-'}",
        f"span={event.get('span_id') or '-'}",
        f"tenant={event.get('tenant_id') or '-'}",
        f"user={event.get('user_id') or '-'}",
        f"session={event.get('session_id') or '-'}",
        f"node={event.get('node') or '-'}",
        f"model={event.get('model') or '-'}",
        f"status={event.get('status')}",
        f"latency={event.get('latency_ms')}ms",
        f"tokens={tokens.get('input')}/{tokens.get('output')}/{tokens.get('total')}",
    ]
    kind = event.get("kind") or "llm_call"
    if kind != "llm_call":  # a request's end or a feedback: what it says instead of the call's fields
        parts = [*parts[:6], f"kind={kind}", f"service={event.get('service_name') or '-'}"]
        parts.append(f"outcome={event.get('outcome') or '-'}")
        if kind == "request":
            parts.append(f"corrections={event.get('correction_attempts')}")
        evaluation = event.get("evaluation") or {}
        if evaluation:
            parts.append(
                f"evaluation={evaluation.get('name')} label={evaluation.get('label') or '-'}"
                f" score={evaluation.get('score')} negative={evaluation.get('negative')}"
            )
    return visible_controls("  ".join(parts), keep_newlines=False)


def _print_events(events: list[dict[str, Any]], *, as_json: bool, full: bool) -> int:
    """Print the events; a closed pipe (`| head`) ends the output quietly."""
    try:
        _write_events(events, as_json=as_json, full=full)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0


def _write_events(events: list[dict[str, Any]], *, as_json: bool, full: bool) -> None:
    out = sys.stdout
    for i, event in enumerate(events):
        if as_json:
            out.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
            continue
        if full and i:
            out.write("\n")
        out.write(_summary(event) + "\n")
        if event.get("status") == "error" or event.get("error_type"):
            error = f"{event.get('error_type') or '-'}: {event.get('error_message') or ''}"
            out.write(f"  error: {visible_controls(error, keep_newlines=False)}\n")
        if full and (event.get("kind") or "llm_call") == "feedback":
            out.write("  comment:\n" + _indent(event.get("response_text")) + "\n")
        elif full and (event.get("kind") or "llm_call") == "llm_call":
            out.write("  prompt:\n" + _indent(event.get("prompt_text")) + "\n")
            out.write("  response:\n" + _indent(event.get("response_text")) + "\n")
        else:
            first = (event.get("prompt_text") or "").strip().splitlines()
            if first:
                short = textwrap.shorten(
                    visible_controls(first[0], keep_newlines=False), 100, placeholder=" …"
                )
                out.write("  prompt: " + short + "\n")


def _fail(exc: Exception) -> int:
    print(f"nl2sql-obs audit: error: {visible_controls(str(exc))}", file=sys.stderr)
    return EXIT_ERROR


def run_show(args: argparse.Namespace) -> int:
    from nl2sql_observability.audit.events import FilterError, Filters, normalize_trace_id, order_key

    try:
        filters = Filters(trace_id=normalize_trace_id(args.trace_id))
        events = _read(args, lambda sink, problems: list(sink.query(filters, problems)))
    except (FilterError, _CliError) as exc:
        return _fail(exc)
    events.sort(key=order_key)  # stable: events of the same instant stay in write order
    if not events:
        print(f"nl2sql-obs audit: no audit events for trace {filters.trace_id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    return _print_events(events, as_json=args.json, full=True)


def run_search(args: argparse.Namespace) -> int:
    from nl2sql_observability.audit.events import FilterError, Filters, normalize_trace_id, parse_when

    try:
        since = parse_when(args.since, name="--since") if args.since is not None else None
        until = parse_when(args.until, name="--until") if args.until is not None else None
        if since and until and since > until:
            raise FilterError(f"--since {args.since!r} is after --until {args.until!r}")
        filters = Filters(
            trace_id=normalize_trace_id(args.trace_id) if args.trace_id else None,
            since=since,
            until=until,
            tenant=args.tenant,
            node=args.node,
            status=args.status,
            limit=args.limit,
        )
        if args.outcome is not None:  # joined on the trace id with the requests' `request` records
            ended = Filters(
                kind="request", outcome=args.outcome, since=since, until=until, tenant=args.tenant
            )
            requests = _read(args, lambda sink, problems: list(sink.query(ended, problems)))
            traces = frozenset(str(e["trace_id"]) for e in requests if e.get("trace_id"))
            filters = dataclasses.replace(filters, trace_ids=traces)
        events = _read(args, lambda sink, problems: sink.search(filters, args.limit, problems))
    except (FilterError, _CliError) as exc:
        return _fail(exc)
    if not events:
        print("nl2sql-obs audit: no matching audit events", file=sys.stderr)
        return EXIT_NOT_FOUND
    return _print_events(events, as_json=args.json, full=False)
