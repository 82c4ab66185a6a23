"""Zero-code instrumentation of LangGraph apps: the `opentelemetry_instrumentor` entry point
`nl2sql_langgraph`, loaded by `opentelemetry-instrument` (turn it off with
`OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=nl2sql_langgraph`).

    from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor
    Nl2sqlInstrumentor().instrument()      # apps that call nl2sql_observability.configure() themselves

The hook: LangChain's `register_configure_hook`, with a context variable whose default is our handler,
so every callback manager LangChain configures (every run, in every thread and task) gets the handler
once, inheritably. It is LangChain's own extension point for tracers (LangSmith uses it), so no LangChain
class is patched and a handler the app adds itself is left alone; wrapping `BaseCallbackManager.__init__`,
as other instrumentors do, also works but patches a constructor on every hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from contextvars import ContextVar
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from nl2sql_observability.autoinstrument.settings import (
    InstrumentorConfigError,
    InstrumentorSettings,
    load_instrumentor_settings,
)

__all__ = ["ENTRY_POINT_NAME", "Nl2sqlInstrumentor", "active_handler", "use_instrumentor_settings"]

ENTRY_POINT_NAME = "nl2sql_langgraph"
_log = logging.getLogger("nl2sql_observability.autoinstrument")

_handler: Any = None  # the Nl2sqlCallbackHandler while instrumented
_hook: tuple[Any, ...] | None = None  # our entry in LangChain's configure hooks
_wrapped_pregel: type | None = None


_pushed_settings: InstrumentorSettings | None = None


def use_instrumentor_settings(settings: InstrumentorSettings | None) -> None:
    """The settings the next `instrument()` uses (`settings.use_settings` hands them over); None: it
    reads the environment."""
    global _pushed_settings
    _pushed_settings = settings


def active_handler() -> Any:
    """The instrumentor's callback handler while it is instrumenting, else None."""
    return _handler


class Nl2sqlInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Every LangGraph run and chat-model call, as the telemetry contract's spans, metrics and audit events;
    plus traced `connection.execute()` for DB-API drivers."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # each part checks for its library itself: none of them is required

    def _instrument(self, **kwargs: Any) -> None:
        global _handler, _hook, _wrapped_pregel
        settings = kwargs.get("settings")
        if not isinstance(settings, InstrumentorSettings):
            settings = _pushed_settings
        if not isinstance(settings, InstrumentorSettings):
            try:
                settings = load_instrumentor_settings()
            except InstrumentorConfigError as exc:  # the distro stops start-up on it before we get here
                _log.error("nl2sql-observability: %s; using the defaults", exc)
                settings = InstrumentorSettings.model_construct()

        from nl2sql_observability.autoinstrument.dbapi import patch_dbapi
        from nl2sql_observability.evaluators import use_evaluators

        use_evaluators(settings.sql_evaluators)
        patch_dbapi()
        from nl2sql_observability.autoinstrument.hooks import warn_if_moved

        langchain_ok, langgraph_ok = warn_if_moved()
        if not langchain_ok:
            return  # no LangChain, or one whose hooks moved (warned): nothing more to hook
        from langchain_core.tracers.context import _configure_hooks, register_configure_hook

        from nl2sql_observability.autoinstrument.graphs import pregel_class, stream_wrapper
        from nl2sql_observability.autoinstrument.handler import GraphRunRegistry, Nl2sqlCallbackHandler
        from nl2sql_observability.autoinstrument.identity import IdentityKeys

        keys = IdentityKeys(
            settings.context_tenant_key, settings.context_user_key, settings.context_session_key
        )
        registry = GraphRunRegistry()
        handler = Nl2sqlCallbackHandler(
            keys, frozenset(settings.validator_nodes), registry, settings.outcome_state_key
        )
        var: ContextVar[Any] = ContextVar("nl2sql_observability_handler", default=handler)
        register_configure_hook(var, True)
        _hook = _configure_hooks[-1]
        _handler = handler

        pregel = pregel_class() if langgraph_ok else None
        if pregel is not None:
            import wrapt

            wrapper = stream_wrapper(registry, keys, gc_freeze=settings.gc_freeze)
            wrapt.wrap_function_wrapper(pregel, "stream", wrapper)
            wrapt.wrap_function_wrapper(pregel, "astream", wrapper)
            _wrapped_pregel = pregel

    def _uninstrument(self, **kwargs: Any) -> None:
        global _handler, _hook, _wrapped_pregel
        from nl2sql_observability.autoinstrument.dbapi import unpatch_dbapi

        unpatch_dbapi()
        if _hook is not None:
            from langchain_core.tracers.context import _configure_hooks

            if _hook in _configure_hooks:
                _configure_hooks.remove(_hook)
            _hook = None
        _handler = None
        if _wrapped_pregel is not None:
            from opentelemetry.instrumentation.utils import unwrap

            unwrap(_wrapped_pregel, "stream")
            unwrap(_wrapped_pregel, "astream")
            _wrapped_pregel = None
