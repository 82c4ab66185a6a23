"""One LangChain chat-model run as one `LlmCall`: how both handlers (the zero-code instrumentor's and
the explicit `TokenHandler`) start it from `on_chat_model_start` and end it from `on_llm_end` or
`on_llm_error`. Never raises."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from opentelemetry.context import Context

from nl2sql_observability.autoinstrument.messages import messages_text, model_name, provider_name, read_result
from nl2sql_observability.context import UserContext
from nl2sql_observability.llm import LlmCall

__all__ = ["end_chat", "fail_chat", "start_chat"]

_log = logging.getLogger("nl2sql_observability.autoinstrument")


def start_chat(
    serialized: dict[str, Any],
    messages: list[list[BaseMessage]],
    metadata: Mapping[str, Any] | None,
    extra: dict[str, Any],
    *,
    default_provider: str = "unknown",
    parent: Context | None = None,
    node: str | None = None,
    user: UserContext | None = None,
) -> LlmCall:
    """The call of a chat-model run that starts: model and provider from the run's metadata, the
    prompt from its messages; `parent`, `node` and `user` default to the current ones."""
    meta = metadata or {}
    return LlmCall(
        model=model_name(serialized, meta, extra),
        provider=provider_name(meta, default_provider),
        prompt_text=messages_text(messages),
        parent=parent,
        node=node,
        user=user,
    )


def end_chat(call: LlmCall, response: LLMResult) -> None:
    """The run answered: its text, token usage and model, then the call's record."""
    try:
        reply = read_result(response)
        call.set_response(
            reply.text,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            response_model=reply.response_model,
        )
    except Exception:  # pragma: no cover - never break the app
        _log.debug("reading the LLM result failed", exc_info=True)
    call.finish()


def fail_chat(call: LlmCall, error: BaseException) -> None:
    """The run failed: its error, then the call's record."""
    try:
        call.set_error(error)
    except Exception:  # pragma: no cover
        _log.debug("recording the LLM error failed", exc_info=True)
    call.finish()
