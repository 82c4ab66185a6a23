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
    "record_validation",
    "user_context",
    "workflow",
]


def configure(**kwargs: Any) -> Any:
    """Set up the SDK without `opentelemetry-instrument` (see `configurator.configure`)."""
    from nl2sql_observability.configurator import configure as _configure  # SDK import only when used

    return _configure(**kwargs)
