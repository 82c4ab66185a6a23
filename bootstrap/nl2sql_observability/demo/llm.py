"""A deterministic, simulated chat model (langchain-core `BaseChatModel`).

It answers like an NL2SQL LLM: SQL for a question (or, when the request plan says so, SQL that
fails validation), then a short answer from result rows. It reports `usage_metadata`, a model name
and a provider, and takes a seeded, variable time (scaled by `time_scale`; 0 means instant).
The reply depends only on the prompt and the plan, never on timing, so answers are reproducible.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from nl2sql_observability.demo.catalog import FALLBACK_SQL, QUESTIONS

__all__ = ["ANSWER_TASK", "SQL_TASK", "SimulatedChatModel", "count_tokens"]

SQL_TASK = "Task: translate the question into one SQLite SELECT statement."
ANSWER_TASK = "Task: answer the question from the SQL result rows."
MODEL_NAME = "nl2sql-sim-1"
PROVIDER = "nl2sql_sim"


def count_tokens(text: str) -> int:
    """Deterministic token estimate (about 4 characters per token)."""
    return max(1, math.ceil(len(text) / 4))


def _unit(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SimulatedProviderError(RuntimeError):
    """What a provider's client raises for a 5xx."""


class SimulatedChatModel(BaseChatModel):
    """Deterministic fake NL2SQL LLM; one instance per request (it carries the request's plan)."""

    model_name: str = MODEL_NAME
    provider: str = PROVIDER
    seed: str = "0"
    failure_sql: str | None = None
    fail_sql_call: bool = False  # the provider fails the SQL-generating call (503)
    time_scale: float = Field(default=1.0, ge=0)
    sql_latency_s: tuple[float, float] = (0.25, 0.9)
    answer_latency_s: tuple[float, float] = (0.08, 0.35)

    @property
    def _llm_type(self) -> str:
        return "nl2sql-simulated"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider=self.provider, ls_model_name=self.model_name, ls_model_type="chat")

    # --- behaviour -------------------------------------------------------------------------
    def _task_and_text(self, messages: list[BaseMessage]) -> tuple[str, str]:
        system = next((m.text for m in messages if m.type == "system"), "")
        human = next((m.text for m in reversed(messages) if m.type == "human"), "")
        return ("answer" if system.startswith(ANSWER_TASK) else "sql"), human

    def _reply(self, task: str, human: str) -> str:
        if task == "sql":
            if self.failure_sql is not None:
                return self.failure_sql
            return QUESTIONS.get(human.strip(), FALLBACK_SQL)
        rows = next((line[len("Rows: ") :] for line in human.splitlines() if line.startswith("Rows: ")), "")
        return f"Here is what the data says: {rows}" if rows else "The query returned no rows."

    def _maybe_fail(self, task: str) -> None:
        if self.fail_sql_call and task == "sql":
            raise SimulatedProviderError("503 Service Unavailable: the model is overloaded, retry later")

    def _latency(self, task: str, human: str) -> float:
        lo, hi = self.sql_latency_s if task == "sql" else self.answer_latency_s
        u = _unit(self.seed, task, human)
        latency = lo + (hi - lo) * u
        if _unit(self.seed, task, "tail") < 0.05:  # a slow tail, so p95 differs from p50
            latency *= 3
        return latency * self.time_scale

    def _result(self, messages: list[BaseMessage], text: str) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        usage = UsageMetadata(
            input_tokens=count_tokens(prompt),
            output_tokens=count_tokens(text),
            total_tokens=count_tokens(prompt) + count_tokens(text),
        )
        message = AIMessage(
            content=text, usage_metadata=usage, response_metadata={"model_name": self.model_name}
        )
        return ChatResult(
            generations=[ChatGeneration(message=message)], llm_output={"model_name": self.model_name}
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        task, human = self._task_and_text(messages)
        time.sleep(self._latency(task, human))
        self._maybe_fail(task)
        return self._result(messages, self._reply(task, human))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        task, human = self._task_and_text(messages)
        await asyncio.sleep(self._latency(task, human))
        self._maybe_fail(task)
        return self._result(messages, self._reply(task, human))
