"""The `opentelemetry_distro` entry point `nl2sql_observability`.

`opentelemetry-instrument` loads one distro (the one named by `OTEL_PYTHON_DISTRO`, else the first
found), calls its `configure()`, then loads the configurators. Ours:
- reads every setting once (`settings.load_all`: `OBSERVABILITY_*` of the distro, logging, scrubber,
  audit log, instrumentor and price table, `OTEL_EXPORTER_OTLP_*`) and keeps the result for the
  configurator, the instrumentor and the singletons, so a bad value stops start-up with one message
  (exit status 2) instead of a logged traceback or a warning at the first LLM call;
- defaults `OTEL_PYTHON_CONFIGURATOR=nl2sql_observability`, so our configurator is the one that runs
  even when another package (e.g. `opentelemetry-distro`) registers a `configurator` entry point.
  It does not depend on `opentelemetry-distro`. If another distro is installed too, set
  `OTEL_PYTHON_DISTRO=nl2sql_observability` (or just `OTEL_PYTHON_CONFIGURATOR`) to be certain.
Only unset variables are given defaults: `OTEL_*` set by the user always win.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

from nl2sql_observability.settings import ConfigurationError, load_all, use_settings

__all__ = ["ENTRY_POINT_NAME", "Nl2sqlDistro"]

ENTRY_POINT_NAME = "nl2sql_observability"


class Nl2sqlDistro(BaseDistro):  # type: ignore[misc]
    """Distro of nl2sql-observability (see the module docstring)."""

    def _configure(self, **kwargs: Any) -> None:
        try:
            settings = load_all()
        except ConfigurationError as exc:
            from nl2sql_observability.configurator import fail_startup

            fail_startup(exc)
        except (RecursionError, MemoryError) as exc:  # input our checks missed: still one line, no app
            from nl2sql_observability.configurator import fail_startup

            fail_startup(ConfigurationError(f"a setting could not be read ({type(exc).__name__}): {exc}"))
        use_settings(settings)  # the configurator and the instrumentor take theirs from it
        if not os.environ.get("OTEL_PYTHON_CONFIGURATOR", "").strip():
            os.environ["OTEL_PYTHON_CONFIGURATOR"] = ENTRY_POINT_NAME
