"""`nl2sql-obs demo`: run the demo NL2SQL app (LangGraph + SQLite + a simulated LLM)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["register"]

N = TypeVar("N", int, float)


def _number(convert: Callable[[str], N], low: N, high: N | None, allowed: str) -> Callable[[str], N]:
    """An argparse `type` that converts a value and checks `low <= value <= high` (no upper bound
    when `high` is None; NaN and infinity are refused), naming the value and what is allowed."""

    def parse(value: str) -> N:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number (allowed: {allowed})") from None
        if not low <= number or (high is not None and not number <= high) or number == float("inf"):
            raise argparse.ArgumentTypeError(f"{value!r} is not allowed (allowed: {allowed})")
        return number

    return parse


_positive_int = _number(int, 1, None, "an integer, 1 or more")
# The demo builds its request list up front; more than this is not a demo (and costs memory).
MAX_REQUESTS = 100_000
_non_negative_int = _number(int, 0, None, "an integer, 0 or more")


def _requests(value: str) -> int:
    number = _non_negative_int(value)
    if number > MAX_REQUESTS:
        raise argparse.ArgumentTypeError(f"{value!r} is too many (allowed: 0 to {MAX_REQUESTS:,})")
    return number


_fraction = _number(float, 0.0, 1.0, "0.0 to 1.0")
# The simulated latencies are seconds; scaled beyond this a demo never ends (1e308 slept for ever).
MAX_TIME_SCALE = 100.0
_scale = _number(float, 0.0, MAX_TIME_SCALE, f"a number from 0 to {MAX_TIME_SCALE:g}")


def _tenants(value: str) -> tuple[str, ...]:
    from pydantic import ValidationError

    from nl2sql_observability.context import UserContext

    tenants = tuple(t for t in (part.strip() for part in value.split(",")) if t)
    if not tenants:
        raise argparse.ArgumentTypeError("no tenant given (allowed: a comma-separated list of tenant ids)")
    for tenant in tenants:
        try:
            UserContext(tenant_id=tenant)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    return tenants


# The stack's services as `make up` publishes them (kept in step with demo.links.StackUrls).
_STACK_DEFAULTS = {
    "jaeger": "http://127.0.0.1:16686",
    "prometheus": "http://127.0.0.1:9090",
    "logs": "http://127.0.0.1:9428",
    "grafana": "http://127.0.0.1:3000",
}


def register(subparsers: Any) -> None:
    from nl2sql_observability.demo.db import default_db_path

    parser = subparsers.add_parser(
        "demo",
        help="run the demo NL2SQL app (fills the dashboards)",
        description=(
            "Run a real LangGraph NL2SQL graph over a SQLite sample database with a simulated, "
            "seeded LLM. Run it under `opentelemetry-instrument` to use the distro's entry points; "
            "plain `nl2sql-obs demo` configures telemetry itself (OBSERVABILITY_EXPORTER, default otlp)."
        ),
    )
    parser.add_argument(
        "--requests", type=_requests, default=20, help=f"generated questions (20; at most {MAX_REQUESTS:,})"
    )
    parser.add_argument("--concurrency", type=_positive_int, default=4, help="requests in flight (4)")
    parser.add_argument(
        "--tenants",
        type=_tenants,
        default=("acme", "globex", "initech"),
        help="tenant ids (acme,globex,initech)",
    )
    parser.add_argument(
        "--failure-rate", type=_fraction, default=0.1, help="fraction of questions with bad SQL (0.1)"
    )
    parser.add_argument(
        "--error-rate",
        type=_fraction,
        default=0.06,
        help="fraction of questions that fail past validation: a SQL error, a query timeout or an LLM"
        " provider error (0.06)",
    )
    parser.add_argument(
        "--feedback-rate",
        type=_fraction,
        default=0.3,
        help="fraction of questions the simulated users rate afterwards, by trace id (0.3)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed: same seed, same answers and tokens (42)")
    parser.add_argument(
        "--time-scale",
        type=_scale,
        default=1.0,
        help="multiplies the simulated LLM latencies (1.0; 0 = instant)",
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        help=f"sample SQLite database (default: {default_db_path()}; created on first run; an existing"
        " file that is not the demo database is never overwritten without --force)",
    )
    parser.add_argument(
        "--force", action="store_true", help="let --db replace a file that is not the demo database"
    )
    parser.add_argument(
        "--question",
        action="append",
        default=[],
        metavar="TEXT",
        help="extra question, asked once by the first tenant (repeatable)",
    )
    parser.add_argument("--summary-json", type=Path, default=None, help="write the summary as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (also when not a TTY)")
    for name, default in _STACK_DEFAULTS.items():  # `make demo` passes the ports of compose/.env
        parser.add_argument(
            f"--{name}-url",
            default=default,
            metavar="URL",
            help=f"the stack's {name} for the summary's links ({default})",
        )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if args.requests + len(args.question) == 0:
        sys.stderr.write("nl2sql-obs demo: nothing to do (--requests 0 and no --question)\n")
        return 2
    problem = _check_paths(args)  # before importing the app: a bad path is refused at once
    if problem:
        sys.stderr.write(f"nl2sql-obs demo: error: {problem}\n")
        return 2
    try:
        from nl2sql_observability.demo.run import (
            DemoOptions,
            format_summary,
            run_demo,
            write_summary_json,
        )
    except ModuleNotFoundError as exc:
        sys.stderr.write(
            f"nl2sql-obs demo needs the demo extra ({exc.name} is missing): "
            "pip install 'nl2sql-observability[demo]'\n"
        )
        return 2
    from nl2sql_observability.settings import ConfigurationError

    opts = DemoOptions(
        requests=args.requests,
        concurrency=args.concurrency,
        tenants=args.tenants,
        failure_rate=args.failure_rate,
        error_rate=args.error_rate,
        feedback_rate=args.feedback_rate,
        seed=args.seed,
        time_scale=args.time_scale,
        db=args.db,
        questions=tuple(args.question),
        progress=not args.no_progress,
    )
    try:
        summary = run_demo(opts)
    except ConfigurationError as exc:
        sys.stderr.write(f"nl2sql-observability: {exc}\n")
        return 2
    from nl2sql_observability.demo.links import StackUrls

    urls = StackUrls(
        jaeger=args.jaeger_url.rstrip("/"),
        prometheus=args.prometheus_url.rstrip("/"),
        logs=args.logs_url.rstrip("/"),
        grafana=args.grafana_url.rstrip("/"),
    )
    print(format_summary(summary, urls))
    if args.summary_json is not None:
        old_umask = os.umask(0o077)  # owner-only, like every file the CLI creates
        try:
            write_summary_json(summary, args.summary_json)
        except OSError as exc:  # checked up front; the file system may still change during the run
            sys.stderr.write(
                f"nl2sql-obs demo: error: cannot write --summary-json {args.summary_json}: {exc}\n"
            )
            return 2
        finally:
            os.umask(old_umask)
    return 0


def _check_paths(args: argparse.Namespace) -> str | None:
    """Refuse, before running, a --db or --summary-json that cannot be used (no traceback later)."""
    from nl2sql_observability.demo.db import check_db_path

    if args.db is not None:
        problem = check_db_path(args.db, force=args.force)
        if problem:
            return problem
    if args.summary_json is not None:
        target: Path = args.summary_json
        if target.is_dir():
            return f"--summary-json {target} is a directory; give a file name, e.g. {target / 'summary.json'}"
        if target.exists() and not target.is_file():
            return (
                f"--summary-json {target} is a FIFO, socket or device, not a regular file; give a file name"
            )
        parent = next((p for p in (target.parent, *target.parent.parents) if p.exists()), None)
        if parent is not None and not parent.is_dir():
            return f"--summary-json {target}: {parent} is not a directory"
    return None
