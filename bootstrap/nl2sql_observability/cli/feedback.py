"""`nl2sql-obs feedback TRACE_ID --label … --score … --comment …`: rate a finished request."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_ERROR = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "feedback",
        help="rate a finished request by its trace id (user feedback)",
        description="Record feedback on the request with this trace id: a gen_ai.evaluation.result event on"
        " its workflow span, nl2sql.evaluations and an audit record. The tenant and service are the"
        " rated request's (from the audit log).",
    )
    parser.add_argument("trace_id", metavar="TRACE_ID", help="the request's trace id (32 hex digits)")
    parser.add_argument("--label", help="e.g. thumbs_up or thumbs_down (OBSERVABILITY_FEEDBACK_LABELS)")
    parser.add_argument("--score", help="a number in the configured range (default 0 to 1)")
    parser.add_argument("--comment", help="free text; scrubbed before it is stored or sent")
    parser.add_argument("--name", default="user_feedback", help="evaluation name (default user_feedback)")
    parser.set_defaults(handler=run)


def _fail(message: str) -> int:
    print(f"nl2sql-obs feedback: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def run(args: argparse.Namespace) -> int:
    from nl2sql_observability.audit import get_audit_log
    from nl2sql_observability.errors import ConfigurationError
    from nl2sql_observability.feedback import FeedbackError, record_feedback, shutdown_emitters

    score: float | None = None
    if args.score is not None:
        try:
            score = float(args.score)
        except ValueError:
            return _fail(f"--score {args.score!r} is not a number (e.g. --score 0.2)")
    try:
        result = record_feedback(
            args.trace_id, name=args.name, score=score, label=args.label, comment=args.comment
        )
    except (FeedbackError, ConfigurationError) as exc:
        return _fail(str(exc))
    audit_log = get_audit_log()
    if audit_log is not None:
        audit_log.flush(10)
    shutdown_emitters()
    print(
        f"feedback recorded on trace {result.trace_id} (service {result.service_name or '-'},"
        f" tenant {result.tenant_id or '-'}, outcome {result.outcome or '-'},"
        f" {'negative' if result.negative else 'not negative'})"
    )
    return 0
