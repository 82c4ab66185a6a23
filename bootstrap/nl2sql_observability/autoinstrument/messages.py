"""LangChain messages and LLM results as audit text: the prompt, and the reply with its tool calls
(the SQL an agent generates is usually a tool call's argument, not reply text)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

__all__ = ["LlmReply", "messages_text", "model_name", "provider_name", "read_result"]

# LangChain's `ls_provider` -> `gen_ai.provider.name` of the GenAI semantic conventions, where they differ.
_PROVIDERS = {
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "google_vertexai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "google_genai": "gcp.gemini",
    "google": "gcp.gemini",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "xai": "x_ai",
}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
            else:
                parts.append(json.dumps(block, default=str, ensure_ascii=False))
        return "\n".join(parts)
    return str(content)


def _tool_calls_text(message: Any) -> str:
    calls = getattr(message, "tool_calls", None) or []
    if not calls:
        return ""
    shown = [{"name": c.get("name"), "arguments": c.get("args")} for c in calls if isinstance(c, Mapping)]
    return "tool_calls: " + json.dumps(shown, default=str, ensure_ascii=False)


def message_text(message: BaseMessage) -> str:
    """The text of one message plus its tool calls, if any."""
    parts = [p for p in (_content_text(message.content), _tool_calls_text(message)) if p]
    return "\n".join(parts)


def messages_text(messages: Sequence[Sequence[BaseMessage]]) -> str:
    """The prompt of a chat call: one `role: text` block per message."""
    return "\n".join(f"{m.type}: {message_text(m)}" for batch in messages for m in batch)


def model_name(
    serialized: Mapping[str, Any] | None, metadata: Mapping[str, Any], kwargs: Mapping[str, Any]
) -> str:
    """The requested model: LangChain's `ls_model_name`, else the invocation or constructor params."""
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


def provider_name(metadata: Mapping[str, Any], default: str = "unknown") -> str:
    provider = metadata.get("ls_provider")
    if not isinstance(provider, str) or not provider:
        return default
    return _PROVIDERS.get(provider, provider)


@dataclass
class LlmReply:
    text: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    response_model: str | None = None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def read_result(response: LLMResult) -> LlmReply:
    """Reply text with tool calls, token usage (`usage_metadata`, else `llm_output.token_usage`) and the
    model that answered."""
    reply = LlmReply()
    generations = response.generations[0] if response.generations else []
    if generations:
        gen = generations[0]
        if isinstance(gen, ChatGeneration):
            reply.text = message_text(gen.message)
            usage = getattr(gen.message, "usage_metadata", None)
            if usage:
                reply.input_tokens = _int(usage.get("input_tokens", 0))
                reply.output_tokens = _int(usage.get("output_tokens", 0))
            model = gen.message.response_metadata.get("model_name") or gen.message.response_metadata.get(
                "model"
            )
            if isinstance(model, str) and model:
                reply.response_model = model
        else:
            reply.text = gen.text
    llm_output = response.llm_output or {}
    if reply.input_tokens is None:
        token_usage = llm_output.get("token_usage") or llm_output.get("usage") or {}
        if isinstance(token_usage, Mapping) and token_usage:
            reply.input_tokens = _int(token_usage.get("prompt_tokens", token_usage.get("input_tokens", 0)))
            reply.output_tokens = _int(
                token_usage.get("completion_tokens", token_usage.get("output_tokens", 0))
            )
    if reply.response_model is None:
        model = llm_output.get("model_name")
        reply.response_model = model if isinstance(model, str) and model else None
    return reply
