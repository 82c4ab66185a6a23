"""Instrumentation API for NL2SQL app code: framework-agnostic, sync and async.

    @node("generate_sql")                 # decorator (sync or async function)
    def generate_sql(state): ...

    with node("validate_sql") as step:    # or a context manager (`with` / `async with`)
        ...
        step.fail("unknown_column", "no column foo")   # mark a handled failure

    with workflow():                      # span `invoke_workflow nl2sql` + nl2sql.request.duration
        graph.invoke(...)

    record_validation("failed", error_type="syntax_error")   # nl2sql.sql.validations

    with llm_call(model="gpt-4o", provider="openai", prompt=text) as call:   # plain LLM SDKs
        reply = client.chat(...)
        call.set_response(reply.text, input_tokens=..., output_tokens=...)

LangChain/LangGraph apps use `nl2sql_observability.langchain.TokenHandler` for the LLM part.

The names live in modules of one job each: `steps` (nodes, workflows, validations), `llm` (LLM calls
and their record), `instruments` (tracer, instruments, `use_providers`); run state is owned by
`context`. This module gathers the public API.
"""

from __future__ import annotations

from nl2sql_observability.instruments import error_type_of, has_sdk, use_providers
from nl2sql_observability.llm import LlmCall, llm_call
from nl2sql_observability.steps import (
    Step,
    count_validation,
    fail_current_step,
    node,
    record_validation,
    workflow,
)

__all__ = [
    "LlmCall",
    "Step",
    "count_validation",
    "error_type_of",
    "fail_current_step",
    "has_sdk",
    "llm_call",
    "node",
    "record_validation",
    "use_providers",
    "workflow",
]
