"""Wrap `Pregel.stream`/`astream` (which `invoke`, `ainvoke`, `batch` and `stream_events` go through):
- to see each graph run's config: LangChain callbacks never receive `configurable`, where apps put
  `thread_id` and their tenant. The wrapper gives the run an id (unless the config has one) and files
  the identity values under it for the callback handler; the app's config object is not changed;
- to put the caller's context back when the stream ends (see `activation`)."""

from __future__ import annotations

import gc
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from nl2sql_observability.autoinstrument.activation import Snapshot
from nl2sql_observability.autoinstrument.handler import GraphRunRegistry
from nl2sql_observability.autoinstrument.identity import IdentityKeys, config_values

__all__ = ["pregel_class", "stream_wrapper"]

_log = logging.getLogger("nl2sql_observability.autoinstrument")


def pregel_class() -> type | None:
    """LangGraph's compiled-graph base class, or None when LangGraph is not installed."""
    try:
        from langgraph.pregel.main import Pregel
    except ImportError:
        try:
            from langgraph.pregel import Pregel
        except ImportError:
            return None
    return Pregel


def _parent_config() -> Mapping[str, Any] | None:
    """The config of the run this graph is called from (a node calling a graph without passing config)."""
    try:
        from langchain_core.runnables.config import var_child_runnable_config

        return var_child_runnable_config.get()
    except Exception:  # pragma: no cover
        return None


def stream_wrapper(
    registry: GraphRunRegistry, keys: IdentityKeys, *, gc_freeze: bool = False
) -> Callable[..., Any]:
    """A wrapt wrapper for `Pregel.stream` and `Pregel.astream`; with `gc_freeze`, the first graph run
    first freezes the heap the app built up to then (`OBSERVABILITY_GC_FREEZE`)."""
    freeze_pending = [gc_freeze]

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if freeze_pending[0]:
            freeze_pending[0] = False
            gc.freeze()  # long-lived objects out of every full collection from now on
        try:
            in_args = len(args) > 1
            config = args[1] if in_args else kwargs.get("config")
            new_config = dict(config) if isinstance(config, Mapping) else {}
            run_id = new_config.get("run_id")
            if not isinstance(run_id, uuid.UUID):
                run_id = uuid.uuid4()
                new_config["run_id"] = run_id
            own = getattr(instance, "config", None)
            registry.add(run_id, config_values(keys, _parent_config(), own, config))
            if in_args:
                args = (args[0], new_config, *args[2:])
            else:
                kwargs = {**kwargs, "config": new_config}
        except Exception:  # pragma: no cover - the app's call goes on unchanged
            _log.debug("reading the graph's run config failed", exc_info=True)
        result = wrapped(*args, **kwargs)
        if hasattr(result, "__anext__"):
            return _restoring_async(result)
        if hasattr(result, "__next__"):
            return _restoring(result)
        return result

    return wrapper


def _restoring(stream: Iterator[Any]) -> Iterator[Any]:
    snapshot = Snapshot()
    try:
        yield from stream
    finally:
        snapshot.restore_if_changed()


async def _restoring_async(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    snapshot = Snapshot()
    try:
        async for item in stream:
            yield item
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
        snapshot.restore_if_changed()
