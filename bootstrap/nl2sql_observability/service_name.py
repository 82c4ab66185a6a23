"""One start-up line when the app runs under the contract's default `service.name`.

The default (`nl2sql`) stays: rules and alerts group by service, and a name per process would make
a new service on every restart. But two apps that both keep it merge into one service on every
dashboard, so an app started without `OTEL_SERVICE_NAME` (or `service.name` in
`OTEL_RESOURCE_ATTRIBUTES`) is told once, on stderr like the start-up errors, how to name itself.
It is not a log record: it would reach the app's JSON stdout and the log store as the app's own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource

from nl2sql_observability import semconv as sc

__all__ = ["default_service_name_hint", "warn_if_default_service_name"]


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
    """Write the hint to stderr once per start-up (called by `configure()`). Never raises."""
    try:
        hint = default_service_name_hint(resource)
        if hint is not None:
            sys.stderr.write(f"nl2sql-observability: {hint}\n")
            sys.stderr.flush()
    except Exception:  # pragma: no cover - a hint must never stop the app (stderr closed, …)
        return
