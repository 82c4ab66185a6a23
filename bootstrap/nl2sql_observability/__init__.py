"""OpenTelemetry distro, tenant context and audit log for an NL2SQL service.

The instrumentation API in one import:

    from nl2sql_observability import UserContext, node, user_context, workflow
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("nl2sql-observability")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

from nl2sql_observability.context import (
    GraphState,
    UserContext,
    current_node,
    current_user_context,
    user_context,
)
from nl2sql_observability.instrumentation import (
    fail_current_step,
    llm_call,
    node,
    record_validation,
    workflow,
)
from nl2sql_observability.outcome import set_outcome

__all__ = [
    "GraphState",
    "UserContext",
    "__version__",
    "configure",
    "current_node",
    "current_user_context",
    "fail_current_step",
    "llm_call",
    "node",
    "record_feedback",
    "record_validation",
    "set_outcome",
    "user_context",
    "workflow",
]


def configure(**kwargs: Any) -> Any:
    """Set up the SDK without `opentelemetry-instrument` (see `configurator.configure`)."""
    from nl2sql_observability.configurator import configure as _configure  # SDK import only when used

    return _configure(**kwargs)


def record_feedback(trace_id: str, **kwargs: Any) -> Any:
    """Rate a finished request by its trace id, from any process (see `feedback.record_feedback`)."""
    from nl2sql_observability.feedback import record_feedback as _record_feedback

    return _record_feedback(trace_id, **kwargs)
