"""The LangChain callback handler that turns LangGraph runs into the telemetry contract.

Which runs become what:
- a compiled graph's run with no tracked parent -> `invoke_workflow nl2sql` + `nl2sql.request.duration`
  (a graph run inside a tracked run is a subgraph or a nested graph: no span of its own);
- a run whose parent is a graph run and whose name is its `langgraph_node` metadata -> `node {name}` +
  `nl2sql.node.duration` (this includes ToolNodes and subgraph nodes);
- every chat-model run -> `chat {model}`, GenAI metrics, `nl2sql.llm.tokens`, one audit event.
Skipped, because they are LangGraph's bookkeeping rather than the app's steps: conditional-edge routers
(a run inside a node whose name is not the node's), channel writes (LangGraph does not trace them),
names starting with `__` (`__start__`), and every other run inside a node (prompt templates, parsers,
tools): they only pass their node, tenant and span on to the runs below them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from nl2sql_observability import semconv as sc
from nl2sql_observability.autoinstrument.activation import Activation
from nl2sql_observability.autoinstrument.chat import end_chat, fail_chat, start_chat
from nl2sql_observability.autoinstrument.hooks import CONTROL_FLOW
from nl2sql_observability.autoinstrument.identity import Identity, IdentityKeys, resolve_identity
from nl2sql_observability.autoinstrument.validation import failure_of
from nl2sql_observability.context import UserContext, current_step
from nl2sql_observability.evaluators import sql_in_reply
from nl2sql_observability.instruments import error_type_of
from nl2sql_observability.llm import LlmCall
from nl2sql_observability.outcome import is_timeout, named_outcome, question_of
from nl2sql_observability.steps import Step, count_validation, report_validation

__all__ = ["GraphRunRegistry", "Nl2sqlCallbackHandler"]

_log = logging.getLogger("nl2sql_observability.autoinstrument")

_MAX_TRACKED = 65_536  # runs whose end never came (abandoned generators) are evicted, oldest first
# LangGraph's control flow (interrupt(), Command(graph=PARENT)) travels as exceptions; it is no error.
_CONTROL_FLOW = CONTROL_FLOW


def _is_control_flow(exc: BaseException) -> bool:
    return isinstance(exc, GeneratorExit) or any(c.__name__ in _CONTROL_FLOW for c in type(exc).__mro__)


class GraphRunRegistry:
    """Run ids of graph runs about to start, with the identity values of their run config.

    Filled by the `Pregel.stream`/`astream` wrapper (the only place that sees the config) and emptied by
    the handler when the run starts."""

    def __init__(self) -> None:
        self._runs: dict[UUID, dict[str, Any]] = {}

    def add(self, run_id: UUID, values: dict[str, Any]) -> None:
        if len(self._runs) >= _MAX_TRACKED:
            self._runs.pop(next(iter(self._runs)), None)
        self._runs[run_id] = values

    def pop(self, run_id: UUID) -> dict[str, Any] | None:
        return self._runs.pop(run_id, None)

    def __len__(self) -> int:
        return len(self._runs)


@dataclass(slots=True)
class _Run:
    kind: str  # "workflow" | "graph" | "node" | "other" | "chat"
    ctx: Context  # what the runs below this one take as their parent context
    identity: Identity
    user: UserContext | None
    node: str | None
    step: Step | None = None
    call: LlmCall | None = None
    activation: Activation | None = None
    validator: bool = field(default=False)
    workflow: Step | None = None  # the root's step, which a failed validation marks too

    def child(self, kind: str) -> _Run:
        """A run below this one that only passes on its context, identity, node and workflow."""
        return _Run(kind, self.ctx, self.identity, self.user, self.node, workflow=self.workflow)


class Nl2sqlCallbackHandler(BaseCallbackHandler):
    """Added to every LangChain callback manager by the instrumentor; never raises into the app."""

    run_inline = True  # called in the run's own thread/task, so context changes reach its code
    raise_error = False

    def __init__(
        self,
        keys: IdentityKeys,
        validator_nodes: frozenset[str],
        registry: GraphRunRegistry,
        outcome_key: str = "nl2sql_outcome",
    ) -> None:
        super().__init__()
        self.keys = keys
        self.validator_nodes = validator_nodes
        self.registry = registry
        self.outcome_key = outcome_key
        self._runs: dict[UUID, _Run] = {}

    # LangChain asks these before dispatching: skip event kinds we do not use.
    @property
    def ignore_agent(self) -> bool:
        return True

    @property
    def ignore_retriever(self) -> bool:
        return True

    @property
    def ignore_custom_event(self) -> bool:
        return True

    def tracked(self) -> int:
        """How many runs are open (for tests: 0 once every run has ended)."""
        return len(self._runs)

    def _track(self, run_id: UUID, run: _Run) -> None:
        if len(self._runs) >= _MAX_TRACKED:
            self._runs.pop(next(iter(self._runs)), None)
        self._runs[run_id] = run

    # --- chains: graphs and nodes ----------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._chain_start(inputs, run_id, parent_run_id, metadata or {}, kwargs.get("name"))
        except Exception:  # pragma: no cover - telemetry never breaks the app
            _log.debug("on_chain_start failed", exc_info=True)

    def _chain_start(
        self, inputs: Any, run_id: UUID, parent_run_id: UUID | None, metadata: Mapping[str, Any], name: Any
    ) -> None:
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        config_values = self.registry.pop(run_id)
        if config_values is not None and parent is None:
            self._start_root(run_id, inputs, metadata, config_values)
            return
        if parent is None:
            return  # not inside a graph we track: not ours
        if config_values is not None:  # a subgraph or a graph called from a node
            self._track(run_id, parent.child("graph"))
            return
        if (
            parent.kind in ("workflow", "graph")
            and isinstance(name, str)
            and name == metadata.get("langgraph_node")
            and not name.startswith("__")
        ):
            request = parent.workflow.request if parent.workflow is not None else None
            step = Step("node", name, auto=True).start(parent.ctx, parent.identity.tenant_id, request)
            ctx = trace.set_span_in_context(step.span, parent.ctx)
            run = _Run("node", ctx, parent.identity, parent.user, name, step=step, workflow=parent.workflow)
            run.validator = name in self.validator_nodes
            run.activation = Activation(ctx, parent.user, name, step)
            self._track(run_id, run)
            return
        self._track(run_id, parent.child("other"))

    def _start_root(
        self, run_id: UUID, inputs: Any, metadata: Mapping[str, Any], config: dict[str, Any]
    ) -> None:
        identity = resolve_identity(config, inputs, metadata, self.keys)
        user = identity.user_context()
        current = otel_context.get_current()
        base = identity.in_baggage(current)
        explicit = current_step()
        if explicit is not None and explicit.kind == "workflow" and not explicit.auto:
            # The app measures the request itself (`workflow()`): no second span or histogram.
            run = _Run("graph", base, identity, user, None, workflow=explicit)
            run.activation = Activation(base, user, None, None)
        else:
            step = Step("workflow", sc.DEFAULT_WORKFLOW_NAME, auto=True).start(base, identity.tenant_id)
            if step.request is not None:
                step.request.question = question_of(inputs)
            ctx = trace.set_span_in_context(step.span, base)
            run = _Run("workflow", ctx, identity, user, None, step=step, workflow=step)
            run.activation = Activation(ctx, user, None, step)
        self._track(run_id, run)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        try:
            if run.validator and run.step is not None and not run.step.validation_recorded:
                failure = failure_of(outputs)
                count_validation("failed" if failure else "passed", failure, run.identity.tenant_id)
                # The request fails only if no later validation passes (its outcome resolves that).
                report_validation(run.step.request, failure, failure is not None)
                if failure is not None:  # the node failed, though nothing raised
                    run.step.fail(failure, f"SQL validation failed: {failure}")
            if run.kind == "workflow" and run.step is not None and run.step.request is not None:
                named = named_outcome(outputs, self.outcome_key)
                if named is not None:
                    run.step.request.named = named
            if run.step is not None:
                run.step.finish(None)
        except Exception:  # pragma: no cover
            _log.debug("on_chain_end failed", exc_info=True)
        finally:
            if run.activation is not None:
                run.activation.restore()

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        try:
            control_flow = _is_control_flow(error)
            if (
                run.validator
                and run.step is not None
                and not run.step.validation_recorded
                and not control_flow
            ):
                count_validation("failed", error_type_of(error), run.identity.tenant_id)
                report_validation(run.step.request, error_type_of(error), True)
            if run.step is not None:
                run.step.finish(None if control_flow else error)
        except Exception:  # pragma: no cover
            _log.debug("on_chain_error failed", exc_info=True)
        finally:
            if run.activation is not None:
                run.activation.restore()

    # --- chat models -------------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
            call = start_chat(
                serialized,
                messages,
                metadata,
                kwargs,
                parent=parent.ctx if parent is not None else None,
                node=parent.node if parent is not None else None,
                user=parent.user if parent is not None else None,
            )
            base = parent.ctx if parent is not None else otel_context.get_current()
            ctx = trace.set_span_in_context(call.span, base)
            run = _Run(
                "chat",
                ctx,
                parent.identity if parent else Identity(),
                call.user,
                call.node,
                call=call,
                workflow=parent.workflow if parent else None,
            )
            run.activation = Activation(ctx, call.user, call.node, None)
            self._track(run_id, run)
        except Exception:  # pragma: no cover
            _log.debug("on_chat_model_start failed", exc_info=True)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None or run.call is None:
            return
        if run.activation is not None:
            run.activation.restore()
        end_chat(run.call, response)
        if run.workflow is not None and run.workflow.request is not None:
            run.workflow.request.succeeded("llm")
            self.on_generated_sql(run, response)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None or run.call is None:
            return
        if run.activation is not None:
            run.activation.restore()
        fail_chat(run.call, error)
        if run.workflow is not None and run.workflow.request is not None:
            try:
                outcome = sc.OUTCOME_TIMEOUT if is_timeout(error) else sc.OUTCOME_LLM_ERROR
                run.workflow.request.failed("llm", outcome, error_type_of(error), error)
            except Exception:  # pragma: no cover
                _log.debug("on_llm_error failed", exc_info=True)

    def on_generated_sql(self, run: _Run, response: LLMResult) -> None:
        """Hand the SQL of a chat reply, with its chat span, to the request's evaluators."""
        try:
            request = run.workflow.request if run.workflow is not None else None
            if request is None or run.call is None:
                return
            for generations in response.generations:
                for generation in generations:
                    for sql in sql_in_reply(getattr(generation, "message", None)):
                        request.add_sql(sql, run.call.span, executed=False)
        except Exception:  # pragma: no cover
            _log.debug("reading generated SQL failed", exc_info=True)
