"""Persistent, scrubbed audit log of LLM prompts and responses. STUB: the forensics work replaces the bodies."""

from __future__ import annotations

from typing import Literal


def record_llm_call(
    *,
    model: str,
    prompt_text: str,
    response_text: str,
    input_tokens: int | None,
    output_tokens: int | None,
    latency_ms: float,
    status: Literal["ok", "error"],
    node: str | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
) -> None:
    """Write one audit event. Call it while the LLM call's span is current: trace/span ids and the
    tenant context are taken from the active context. Never raises; a broken sink is reported once."""
