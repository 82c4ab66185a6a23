"""OpenInference's and OpenLLMetry's LangChain instrumentors in the same process: our spans, metrics
and audit events stay correct and single (theirs come on top, with names of their own)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from apps.sql_agent import MODEL, build, make_db, question, script
from nl2sql_observability.audit import AuditLog, AuditSettings, set_audit_log
from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor
from nl2sql_observability.autoinstrument.settings import InstrumentorSettings

SQL = "SELECT count(*) FROM orders WHERE status = 'cancelled'"
CONFIG = {"configurable": {"thread_id": "th-1", "tenant_id": "acme"}}


def _others(tracer_provider):
    """The other LangChain instrumentors, instrumented onto the same providers."""
    from openinference.instrumentation.langchain import LangChainInstrumentor as OpenInference
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor as OpenLLMetry

    found = []
    for cls in (OpenInference, OpenLLMetry):
        inst = cls()
        inst.instrument(tracer_provider=tracer_provider, skip_dep_check=True)
        found.append(inst)
    return found


@pytest.mark.parametrize("ours_first", [True, False])
def test_other_langchain_instrumentors_leave_ours_single(captured, tmp_path: Path, ours_first: bool):
    audit = tmp_path / "events.log"
    set_audit_log(AuditLog(AuditSettings(path=audit)))
    ours = Nl2sqlInstrumentor()
    others = []
    try:
        if ours_first:
            ours.instrument(settings=InstrumentorSettings())
        others = _others(captured.telemetry.tracer_provider)
        if not ours_first:
            ours.instrument(settings=InstrumentorSettings())
        build(make_db(), script(SQL, bad_first=True)).invoke(question(), config=CONFIG)
    finally:
        for inst in others:
            inst.uninstrument()
        ours.uninstrument()
        set_audit_log(None)
    spans = captured.spans()
    names = Counter(s.name for s in spans)
    assert names["invoke_workflow nl2sql"] == 1
    assert names["node generate_query"] == 3
    assert names["node check_query"] == 2
    assert names[f"chat {MODEL}"] == 4
    assert len(spans) > sum(
        n for k, n in names.items() if k.startswith(("invoke_workflow", "node ", "chat "))
    ), "the other instrumentors did produce spans of their own"
    root = next(s for s in spans if s.name == "invoke_workflow nl2sql")
    ours_by_id = {s.context.span_id: s for s in spans}
    for span in spans:
        if span.name.startswith("node "):
            assert span.parent.span_id == root.context.span_id
        if span.name.startswith("chat "):
            assert ours_by_id[span.parent.span_id].name == f"node {span.attributes['nl2sql.node.name']}"
    requests = captured.points("nl2sql.request.duration")
    assert sum(p.count for p in requests) == 1
    tokens = sum(p.value for p in captured.points("nl2sql.llm.tokens"))
    assert tokens == sum(m.usage_metadata["total_tokens"] for m in script(SQL, bad_first=True))
    validations = Counter(
        {
            dict(p.attributes)["nl2sql.validation.outcome"]: p.value
            for p in captured.points("nl2sql.sql.validations")
        }
    )
    assert validations == {"failed": 1, "passed": 1}
    assert [json.loads(x)["kind"] for x in audit.read_text().splitlines()].count("llm_call") == 4
