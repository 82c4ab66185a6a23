"""One start-up line when the app runs under the contract's default `service.name`.

The default (`nl2sql`) stays: rules and alerts group by service, and a name per process would make
a new service on every restart. But two apps that both keep it merge into one service on every
dashboard, so an app started without `OTEL_SERVICE_NAME` (or `service.name` in
`OTEL_RESOURCE_ATTRIBUTES`) is told once how to name itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource

from nl2sql_observability import semconv as sc

__all__ = ["default_service_name_hint", "warn_if_default_service_name"]

_log = logging.getLogger("nl2sql_observability.startup")


def default_service_name_hint(resource: Resource, environ: Mapping[str, str] | None = None) -> str | None:
    """The hint to log, or None when the service was named on purpose (even as `nl2sql`)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SERVICE_NAME", "").strip() or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        return None
    if resource.attributes.get(sc.SERVICE_NAME) != sc.DEFAULT_SERVICE_NAME:
        return None
    return (
        f"service.name is the default {sc.DEFAULT_SERVICE_NAME!r}: every app that keeps it shares one "
        "service on the dashboards; name yours, e.g. OTEL_SERVICE_NAME=my-nl2sql-app"
    )


def warn_if_default_service_name(resource: Resource) -> None:
    """Log the hint once per start-up (called by `configure()`). Never raises."""
    try:
        hint = default_service_name_hint(resource)
        if hint is not None:
            _log.warning(hint)
    except Exception:  # pragma: no cover - a hint must never stop the app
        return
