"""The LangChain and LangGraph names the instrumentor relies on, several of them private, checked in
one place: when `langchain_core` imports but one of them has moved, the instrumentor says so in one
warning instead of switching itself off in silence (tests/unit/test_langchain_names.py pins them)."""

from __future__ import annotations

import importlib
import importlib.util
import logging

__all__ = ["CONTROL_FLOW", "LANGCHAIN_NAMES", "LANGGRAPH_NAMES", "missing_names", "warn_if_moved"]

_log = logging.getLogger("nl2sql_observability.autoinstrument")

# (module, attribute path) the LangChain part needs: the configure hook is how our handler joins every
# callback manager; the child config is how a graph called from a node finds its parent's config.
LANGCHAIN_NAMES: tuple[tuple[str, str], ...] = (
    ("langchain_core.tracers.context", "register_configure_hook"),
    ("langchain_core.tracers.context", "_configure_hooks"),
    ("langchain_core.runnables.config", "var_child_runnable_config"),
    ("langchain_core.callbacks", "BaseCallbackHandler"),
)
# The graph wrapper reads each run's config in `Pregel.stream`/`astream`; LangGraph's control flow
# (`interrupt()`, `Command(graph=Command.PARENT)`) reaches callbacks as these exceptions, which are no error.
LANGGRAPH_NAMES: tuple[tuple[str, str], ...] = (
    ("langgraph.pregel", "Pregel.stream"),
    ("langgraph.pregel", "Pregel.astream"),
    ("langgraph.errors", "GraphBubbleUp"),
    ("langgraph.errors", "GraphInterrupt"),
    ("langgraph.errors", "ParentCommand"),
)
CONTROL_FLOW = frozenset({"GraphBubbleUp", "GraphInterrupt", "NodeInterrupt", "ParentCommand"})


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def missing_names(names: tuple[tuple[str, str], ...]) -> list[str]:
    """`module.attr` of each name that cannot be found (its package being installed)."""
    missing = []
    for module_name, path in names:
        try:
            obj: object = importlib.import_module(module_name)
            for part in path.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            missing.append(f"{module_name}.{path}")
    return missing


def warn_if_moved() -> tuple[bool, bool]:
    """Whether the LangChain part and the LangGraph part can be hooked. A library that is installed but
    lacks a name we rely on gets one warning naming what moved; a library that is absent, none."""
    langchain = _installed("langchain_core")
    langgraph = _installed("langgraph")
    moved = (missing_names(LANGCHAIN_NAMES) if langchain else []) + (
        missing_names(LANGGRAPH_NAMES) if langgraph else []
    )
    if moved:
        _log.warning(
            "nl2sql-observability: the installed LangChain/LangGraph no longer has %s; the zero-code"
            " instrumentor leaves %s uninstrumented. Install a langchain-core/langgraph version this"
            " release supports (see pyproject.toml) or upgrade nl2sql-observability.",
            ", ".join(moved),
            "LangChain and LangGraph"
            if any(m.startswith("langchain_core") for m in moved)
            else "LangGraph graphs",
        )
    langchain_ok = langchain and not any(m.startswith("langchain_core") for m in moved)
    return langchain_ok, langchain_ok and langgraph and not moved
