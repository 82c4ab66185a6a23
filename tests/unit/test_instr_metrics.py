"""Every contract metric: name, unit, attributes, buckets, exemplars; tenant.id yes, user/session never."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage
from nl2sql_observability import semconv as sc
from nl2sql_observability.context import UserContext, user_context
from nl2sql_observability.demo.llm import SQL_TASK, SimulatedChatModel
from nl2sql_observability.instrumentation import llm_call, node, record_validation, workflow
from nl2sql_observability.langchain import TokenHandler
from opentelemetry.sdk.metrics.export import ExponentialHistogram, Histogram, Sum

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                    20.48, 40.96, 81.92)  # fmt: skip
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
CTX = UserContext(tenant_id="globex", user_id="u-7", session_id="s-7")


def _exercise() -> None:
    with user_context(CTX), workflow():
        with node("validate_sql"):
            record_validation("passed")
            record_validation("failed", error_type="syntax_error")
        with node("generate_sql"):
            SimulatedChatModel(time_scale=0).invoke(
                [SystemMessage(SQL_TASK), HumanMessage("How many orders were cancelled?")],
                config={"callbacks": [TokenHandler()]},
            )


def test_every_contract_metric_name_unit_type(captured, audit_calls):
    _exercise()
    metrics = captured.metrics()
    expected = {
        "nl2sql.node.duration": ("s", ExponentialHistogram),
        "nl2sql.request.duration": ("s", ExponentialHistogram),
        "nl2sql.sql.validations": ("{validation}", Sum),
        "nl2sql.llm.tokens": ("{token}", Sum),
        "gen_ai.client.token.usage": ("{token}", Histogram),
        "gen_ai.client.operation.duration": ("s", Histogram),
    }
    assert set(expected) <= set(metrics)
    for name, (unit, kind) in expected.items():
        assert metrics[name].unit == unit, name
        assert isinstance(metrics[name].data, kind), name
        if kind is Sum:
            assert metrics[name].data.is_monotonic


def test_attributes_per_metric(captured, audit_calls):
    _exercise()
    nodes = {p.attributes["nl2sql.node.name"]: p for p in captured.points("nl2sql.node.duration")}
    assert set(nodes) == {"validate_sql", "generate_sql"}
    assert dict(nodes["validate_sql"].attributes) == {
        "nl2sql.node.name": "validate_sql",
        "tenant.id": "globex",
    }
    (req,) = captured.points("nl2sql.request.duration")
    # the last validation of the request failed: it ends validation_rejected
    assert dict(req.attributes) == {
        "tenant.id": "globex",
        "nl2sql.outcome": "validation_rejected",
        "error.type": "syntax_error",
    }
    validations = {
        tuple(sorted(p.attributes.items())): p.value for p in captured.points("nl2sql.sql.validations")
    }
    assert validations == {
        (("nl2sql.validation.outcome", "passed"), ("tenant.id", "globex")): 1,
        (("error.type", "syntax_error"), ("nl2sql.validation.outcome", "failed"), ("tenant.id", "globex")): 1,
    }
    tokens = {p.attributes["gen_ai.token.type"]: p for p in captured.points("nl2sql.llm.tokens")}
    assert set(tokens) == {"input", "output"}
    assert dict(tokens["input"].attributes) == {
        "gen_ai.token.type": "input",
        "gen_ai.request.model": "nl2sql-sim-1",
        "gen_ai.provider.name": "nl2sql_sim",
        "tenant.id": "globex",
        "nl2sql.node.name": "generate_sql",
    }
    chat = captured.span("chat nl2sql-sim-1")
    assert tokens["input"].value == chat.attributes["gen_ai.usage.input_tokens"]
    assert tokens["output"].value == chat.attributes["gen_ai.usage.output_tokens"]
    usage = {p.attributes["gen_ai.token.type"]: p for p in captured.points("gen_ai.client.token.usage")}
    assert usage["input"].sum == tokens["input"].value
    assert dict(usage["output"].attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "nl2sql_sim",
        "gen_ai.request.model": "nl2sql-sim-1",
        "gen_ai.response.model": "nl2sql-sim-1",
        "gen_ai.token.type": "output",
        "tenant.id": "globex",
    }
    (op,) = captured.points("gen_ai.client.operation.duration")
    assert op.attributes["gen_ai.operation.name"] == "chat"
    assert op.attributes["tenant.id"] == "globex"


def test_user_and_session_never_on_metrics(captured, audit_calls):
    _exercise()
    for name, metric in captured.metrics().items():
        for point in metric.data.data_points:
            keys = set(point.attributes)
            assert not keys & sc.FORBIDDEN_METRIC_ATTRIBUTES, (name, keys)
            if name.startswith(("nl2sql.", "gen_ai.")):
                assert point.attributes.get("tenant.id") == "globex", name


def test_no_tenant_context_means_no_tenant_label(captured):
    with node("answer"):
        pass
    (point,) = captured.points("nl2sql.node.duration")
    assert dict(point.attributes) == {"nl2sql.node.name": "answer"}


def test_histogram_buckets_are_the_contract_ones(captured, audit_calls):
    _exercise()
    with llm_call(model="m", provider="p") as call:
        call.set_response("x", input_tokens=5, output_tokens=1)
    for point in captured.points("gen_ai.client.operation.duration"):
        assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    for point in captured.points("gen_ai.client.token.usage"):
        assert tuple(point.explicit_bounds) == TOKEN_BUCKETS


def test_histograms_carry_exemplars_pointing_at_the_span(captured, audit_calls):
    _exercise()
    spans = {s.context.span_id: s for s in captured.spans()}
    metrics = captured.metrics()  # one collection: exemplars are reset after each one
    for name in (
        "nl2sql.node.duration",
        "nl2sql.request.duration",
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
    ):
        for point in metrics[name].data.data_points:
            assert point.exemplars, f"{name} has no exemplar"
            for exemplar in point.exemplars:
                span = spans[exemplar.span_id]
                assert exemplar.trace_id == span.context.trace_id
            if name == "nl2sql.node.duration":
                (exemplar,) = point.exemplars
                assert spans[exemplar.span_id].name == f"node {point.attributes['nl2sql.node.name']}"
            if name == "nl2sql.request.duration":
                assert spans[point.exemplars[0].span_id].name == "invoke_workflow nl2sql"


def test_no_latency_lists_in_process():
    # the MeterProvider is the store: no module-level lists of measurements in our package
    import nl2sql_observability.instrumentation as instr

    for value in vars(instr).values():
        assert not (isinstance(value, list) and value and isinstance(value[0], float))


def test_node_and_request_durations_are_exponential_fine_enough_for_a_p95_within_9_percent(captured):
    """Native histograms in Prometheus: a bucket of the exported scale spans at most 2^(1/8) (9 %)."""
    durations_s = [0.001 * 1.37**i for i in range(30)]  # 1 ms to 9 s in one series
    histogram = captured.telemetry.meter_provider.get_meter("t").create_histogram(sc.NODE_DURATION, unit="s")
    for value in durations_s:
        histogram.record(value, {"nl2sql.node.name": "n"})
    (point,) = [p for p in captured.points(sc.NODE_DURATION) if p.attributes == {"nl2sql.node.name": "n"}]
    assert point.scale >= 3
    assert 2 ** (2**-point.scale) < 1.091
    assert point.count == len(durations_s)


def test_node_and_request_spans_last_exactly_what_their_histograms_recorded(captured):
    """One clock: a dashboard p95 and the spans of the same runs measure the same intervals."""
    with user_context(CTX), workflow(), node("validate_sql"):
        sum(range(10_000))
    spans = {s.name: s for s in captured.spans()}
    metrics = captured.metrics()
    for span_name, metric in (
        ("node validate_sql", sc.NODE_DURATION),
        ("invoke_workflow nl2sql", sc.REQUEST_DURATION),
    ):
        (point,) = metrics[metric].data.data_points
        span = spans[span_name]
        assert span.end_time - span.start_time == round(point.sum * 1e9), span_name
