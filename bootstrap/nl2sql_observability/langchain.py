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
from langchain_core.outputs import ChatGeneration, LLMResult

from nl2sql_observability.instrumentation import LlmCall

__all__ = ["TokenHandler"]

_log = logging.getLogger(__name__)


def _messages_text(messages: list[list[BaseMessage]]) -> str:
    lines = []
    for batch in messages:
        for message in batch:
            content = message.content if isinstance(message.content, str) else str(message.content)
            lines.append(f"{message.type}: {content}")
    return "\n".join(lines)


def _model_name(serialized: dict[str, Any] | None, metadata: dict[str, Any], kwargs: dict[str, Any]) -> str:
    name = metadata.get("ls_model_name")
    if isinstance(name, str) and name:
        return name
    params = kwargs.get("invocation_params") or {}
    for key in ("model", "model_name", "model_id"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    ser_kwargs = (serialized or {}).get("kwargs") or {}
    for key in ("model", "model_name"):
        value = ser_kwargs.get(key)
        if isinstance(value, str) and value:
            return value
    return "unknown"


class TokenHandler(BaseCallbackHandler):
    """Turns LangChain chat-model callbacks into GenAI spans, metrics and audit events.

    Thread- and task-safe (runs are keyed by `run_id`); `run_inline` keeps it in the caller's
    context under asyncio, so the node and tenant of the call are the right ones. Never raises."""

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
        try:
            meta = metadata or {}
            provider = meta.get("ls_provider")
            call = LlmCall(
                model=_model_name(serialized, meta, kwargs),
                provider=provider if isinstance(provider, str) and provider else self._default_provider,
                prompt_text=_messages_text(messages),
            )
            with self._lock:
                self._calls[run_id] = call
        except Exception:  # pragma: no cover - never break the app
            _log.debug("TokenHandler.on_chat_model_start failed", exc_info=True)

    def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        with self._lock:
            call = self._calls.pop(run_id, None)
        if call is None:
            return
        try:
            text = ""
            input_tokens: int | None = None
            output_tokens: int | None = None
            response_model: str | None = None
            generations = response.generations[0] if response.generations else []
            if generations:
                gen = generations[0]
                text = gen.text
                if isinstance(gen, ChatGeneration):
                    usage = getattr(gen.message, "usage_metadata", None)
                    if usage:
                        input_tokens = int(usage.get("input_tokens", 0))
                        output_tokens = int(usage.get("output_tokens", 0))
                    model = gen.message.response_metadata.get("model_name")
                    if isinstance(model, str) and model:
                        response_model = model
            if input_tokens is None and response.llm_output:
                token_usage = response.llm_output.get("token_usage") or {}
                if token_usage:
                    input_tokens = int(token_usage.get("prompt_tokens", 0))
                    output_tokens = int(token_usage.get("completion_tokens", 0))
            if response_model is None and response.llm_output:
                model = response.llm_output.get("model_name")
                response_model = model if isinstance(model, str) and model else None
            call.set_response(
                text, input_tokens=input_tokens, output_tokens=output_tokens, response_model=response_model
            )
        except Exception:  # pragma: no cover
            _log.debug("TokenHandler.on_llm_end failed to read the response", exc_info=True)
        call.finish()

    def on_llm_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        with self._lock:
            call = self._calls.pop(run_id, None)
        if call is None:
            return
        try:
            call.set_error(error)
        except Exception:  # pragma: no cover
            _log.debug("TokenHandler.on_llm_error failed", exc_info=True)
        call.finish()
