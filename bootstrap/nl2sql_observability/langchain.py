"""LangChain callback handler for LLM calls (the remediation plan's `TokenHandler`).

    handler = TokenHandler()
    graph.invoke(state, config={"callbacks": [handler]})     # or model.invoke(..., config=...)

For every chat-model run it produces the span `chat {model}` (CLIENT, GenAI semconv attributes,
child of the node span active when the call started), `gen_ai.client.operation.duration`,
`gen_ai.client.token.usage`, `nl2sql.llm.tokens` (from the reply's `usage_metadata`) and one audit
event with the scrubbed prompt and reply. Needs `langchain-core` (the `demo` extra installs it).
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from nl2sql_observability.autoinstrument.chat import end_chat, fail_chat, start_chat
from nl2sql_observability.llm import LlmCall

__all__ = ["TokenHandler"]

_log = logging.getLogger(__name__)


def _instrumentor_sees_it() -> bool:
    """True while the zero-code instrumentor records every chat call: this handler then stands aside."""
    from nl2sql_observability.autoinstrument import active_handler

    return active_handler() is not None


class TokenHandler(BaseCallbackHandler):
    """Turns LangChain chat-model callbacks into GenAI spans, metrics and audit events.

    Thread- and task-safe (runs are keyed by `run_id`); `run_inline` keeps it in the caller's
    context under asyncio, so the node and tenant of the call are the right ones. Never raises.
    Does nothing while the zero-code instrumentor is active (it records the same calls)."""

    run_inline = True
    raise_error = False

    def __init__(self, *, default_provider: str = "unknown") -> None:
        super().__init__()
        self._default_provider = default_provider
        self._calls: dict[UUID, LlmCall] = {}
        self._lock = threading.Lock()

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
        if _instrumentor_sees_it():
            return
        try:
            call = start_chat(serialized, messages, metadata, kwargs, default_provider=self._default_provider)
            with self._lock:
                self._calls[run_id] = call
        except Exception:  # pragma: no cover - never break the app
            _log.debug("TokenHandler.on_chat_model_start failed", exc_info=True)

    def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        with self._lock:
            call = self._calls.pop(run_id, None)
        if call is not None:
            end_chat(call, response)

    def on_llm_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        with self._lock:
            call = self._calls.pop(run_id, None)
        if call is not None:
            fail_chat(call, error)
