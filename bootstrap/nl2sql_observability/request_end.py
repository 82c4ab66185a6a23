"""The end of one request, once its outcome is known: `nl2sql.requests`, the "request finished" log
record and the audit log's `request` record (which `record_feedback` later looks up)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from opentelemetry.trace import Span, get_tracer_provider

from nl2sql_observability import evaluators
from nl2sql_observability import semconv as sc
from nl2sql_observability.callrecord import RequestRecord
from nl2sql_observability.context import current_user_context
from nl2sql_observability.instruments import get_instruments

if TYPE_CHECKING:
    from nl2sql_observability.outcome import RequestOutcome

__all__ = ["REQUESTS_LOGGER", "finish_request", "service_name"]

REQUESTS_LOGGER = "nl2sql_observability.requests"
_log = logging.getLogger(REQUESTS_LOGGER)
_service: tuple[object, str] | None = None


def service_name() -> str:
    """`service.name` of the global tracer provider's resource (cached per provider)."""
    global _service
    provider = get_tracer_provider()
    cached = _service
    if cached is not None and cached[0] is provider:
        return cached[1]
    import os

    resource = getattr(provider, "resource", None)
    name = resource.attributes.get(sc.SERVICE_NAME) if resource is not None else None
    if not isinstance(name, str) or not name or name.startswith("unknown_service"):
        name = os.environ.get("OTEL_SERVICE_NAME") or sc.DEFAULT_SERVICE_NAME
    _service = (provider, name)
    return name


def finish_request(
    span: Span,
    tenant: str | None,
    outcome: str,
    error_type: str | None,
    corrections: int,
    duration_s: float,
    request: RequestOutcome | None = None,
) -> None:
    """Count the request and write its log and audit records; call with the workflow span current.
    Never raises."""
    try:
        ins = get_instruments()
        ins.requests.add(
            1, ins.attrs((sc.OUTCOME, outcome), (sc.TENANT_ID, tenant), (sc.ERROR_TYPE, error_type))
        )
        level = logging.WARNING if outcome in sc.ERROR_OUTCOMES else logging.INFO
        if _log.isEnabledFor(level):
            extra: dict[str, object] = {sc.OUTCOME: outcome, sc.CORRECTION_ATTEMPTS: corrections}
            if error_type is not None:
                extra[sc.ERROR_TYPE] = error_type
            _log.log(level, "request finished", extra=extra)
        if request is not None and request.sqls:
            evaluators.submit(evaluators.Job(request.question, tenant, tuple(request.sqls)))
        span_context = span.get_span_context()
        if not span_context.is_valid:
            return  # no trace: nothing a feedback could ever name
        from nl2sql_observability import audit

        user = current_user_context()
        audit.submit(
            RequestRecord(
                trace_id=span_context.trace_id,
                span_id=span_context.span_id,
                service_name=service_name(),
                tenant_id=tenant,
                user_id=user.user_id if user is not None else None,
                session_id=user.session_id if user is not None else None,
                outcome=outcome,
                error_type=error_type,
                correction_attempts=corrections,
                end_time=time.time(),
                duration_s=duration_s,
            )
        )
    except Exception:  # pragma: no cover - telemetry never breaks the app
        _log.debug("recording the end of a request failed", exc_info=True)
