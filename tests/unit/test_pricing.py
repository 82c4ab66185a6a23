"""Cost per tenant: the price table (defaults, override file, validation) and the cost telemetry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from nl2sql_observability import pricing
from nl2sql_observability import semconv as sc
from nl2sql_observability.context import UserContext, user_context
from nl2sql_observability.instrumentation import llm_call, node
from nl2sql_observability.pricing import (
    ModelPrice,
    PriceTable,
    PriceTableError,
    load_price_table,
    use_price_table,
)
from nl2sql_observability.settings import ConfigurationError, load_all

CTX = UserContext(tenant_id="acme", user_id="u-1", session_id="s-1")


def _price(inp: float, out: float) -> dict[str, object]:
    return {"input": inp, "output": out, "source": "https://example.test/prices", "date": "2026-11-01"}


def _write(tmp_path: Path, models: dict[str, object], unit: str = "USD per 1M tokens") -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"unit": unit, "models": models}), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _fresh_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(pricing.PRICES_FILE_ENV, raising=False)
    use_price_table(None)
    yield
    use_price_table(None)


# -- the packaged defaults ------------------------------------------------------------------------
def test_every_default_price_has_a_source_and_a_date() -> None:
    raw = json.loads(Path(pricing.__file__).with_name("prices.json").read_text(encoding="utf-8"))
    table = load_price_table({})
    assert len(table) == len(raw["models"]) >= 5
    for name in raw["models"]:
        price = table.lookup(name)
        assert price is not None, name
        assert price.source.strip(), name
        assert price.date <= date.today(), name
        assert price.output >= price.input > 0, name
    # the demo's simulated model is priced, so `make demo` shows cost
    from nl2sql_observability.demo.llm import MODEL_NAME

    assert table.lookup(MODEL_NAME) is not None


def test_release_suffixes_match_but_other_models_prefixes_do_not() -> None:
    table = PriceTable({"gpt-4o": ModelPrice(**_price(2.5, 10.0))})  # type: ignore[arg-type]
    assert table.lookup("gpt-4o-2024-08-06") is table.lookup("gpt-4o") is not None
    assert table.lookup("gpt-4o-latest") is not None
    assert table.lookup("claude-x-20250514") is None
    assert table.lookup("gpt-4o-mini") is None, "a cheaper model must never get another model's price"
    assert table.lookup("gpt-4") is None


def test_cost_is_tokens_times_the_price_per_million() -> None:
    price = ModelPrice(**_price(3.0, 15.0))  # type: ignore[arg-type]
    assert price.cost(1_000_000, 0) == pytest.approx(3.0)
    assert price.cost(2000, 500) == pytest.approx((2000 * 3.0 + 500 * 15.0) / 1e6)


def test_lookup_is_cached_and_bounded() -> None:
    table = PriceTable({"m": ModelPrice(**_price(1, 2))})  # type: ignore[arg-type]
    for i in range(5000):
        table.lookup(f"unknown-{i}")
    assert len(table._cache) <= 1024
    assert table.lookup("m") is table.lookup("m")
    assert table.lookup(["not", "a", "name"]) is None  # type: ignore[arg-type]


# -- the user's file --------------------------------------------------------------------------------
def test_the_users_file_adds_models_and_wins_over_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, {"gpt-4o": _price(1.0, 1.0), "in-house-7b": _price(0.01, 0.02)})
    table = load_price_table({pricing.PRICES_FILE_ENV: str(path)})
    assert table.lookup("gpt-4o") == ModelPrice(**_price(1.0, 1.0))  # type: ignore[arg-type]
    assert table.lookup("in-house-7b") is not None
    assert table.lookup("gpt-4o-mini") is not None  # the other defaults stay


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        (
            json.dumps({"unit": "EUR per 1M tokens", "models": {}}),
            "unit: Input should be 'USD per 1M tokens'",
        ),
        (json.dumps({"unit": "USD per 1M tokens", "models": {"m": _price(-1, 2)}}), "models.m.input:"),
        (
            json.dumps(
                {
                    "unit": "USD per 1M tokens",
                    "models": {"m": {k: v for k, v in _price(1, 2).items() if k != "source"}},
                }
            ),
            "models.m.source: Field required",
        ),
        (
            json.dumps({"unit": "USD per 1M tokens", "models": {"m": {**_price(1, 2), "date": "yesterday"}}}),
            "models.m.date:",
        ),
        (
            json.dumps({"unit": "USD per 1M tokens", "models": {"m": {**_price(1, 2), "inptu": 1}}}),
            "models.m.inptu: Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_file_gives_one_line_naming_variable_file_and_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, problem: str
) -> None:
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(PriceTableError) as raised:
        load_price_table({pricing.PRICES_FILE_ENV: str(path)})
    message = str(raised.value)
    assert message.startswith(f"OBSERVABILITY_PRICES_FILE='{path}': "), message
    assert problem in message, message
    assert "\n" not in message
    # and start-up stops with it
    monkeypatch.setenv(pricing.PRICES_FILE_ENV, str(path))
    with pytest.raises(ConfigurationError) as startup:
        load_all()
    assert problem in str(startup.value)


def test_a_file_that_turns_bad_after_startup_prices_nothing_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(pricing.PRICES_FILE_ENV, str(tmp_path / "gone.json"))
    table = pricing.price_table()
    assert len(table) == 0
    assert table.lookup("gpt-4o") is None
    assert "LLM cost is not recorded" in caplog.text


# -- telemetry ------------------------------------------------------------------------------------
def _call(model: str, inp: int | None, out: int | None) -> None:
    with user_context(CTX), node("generate_sql"), llm_call(model=model, provider="openai") as call:
        call.set_response("SELECT 1", input_tokens=inp, output_tokens=out)


def test_cost_counter_and_span_attributes(captured, audit_calls, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(pricing.PRICES_FILE_ENV, str(_write(tmp_path, {"m-priced": _price(2.0, 8.0)})))
    _call("m-priced", 1000, 250)
    _call("m-priced", 3000, 0)
    expected = (4000 * 2.0 + 250 * 8.0) / 1e6
    metrics = captured.metrics()
    assert metrics[sc.LLM_COST].unit == "{USD}"
    (point,) = captured.points(sc.LLM_COST)
    assert point.value == pytest.approx(expected)
    assert dict(point.attributes) == {
        "gen_ai.request.model": "m-priced",
        "gen_ai.provider.name": "openai",
        "tenant.id": "acme",
        "nl2sql.node.name": "generate_sql",
    }
    assert sc.LLM_UNPRICED_TOKENS not in metrics
    chats = [s for s in captured.spans() if s.name == "chat m-priced"]
    assert [s.attributes["gen_ai.usage.cost.amount"] for s in chats] == pytest.approx(
        [(1000 * 2.0 + 250 * 8.0) / 1e6, 3000 * 2.0 / 1e6]
    )
    assert {s.attributes["gen_ai.usage.cost.currency"] for s in chats} == {"USD"}


def test_unpriced_model_counts_tokens_and_adds_no_cost(captured, audit_calls) -> None:
    _call("home-made-llm", 120, 30)
    metrics = captured.metrics()
    assert sc.LLM_COST not in metrics
    points = {p.attributes["gen_ai.token.type"]: p for p in captured.points(sc.LLM_UNPRICED_TOKENS)}
    assert {k: p.value for k, p in points.items()} == {"input": 120, "output": 30}
    assert dict(points["input"].attributes) == {
        "gen_ai.token.type": "input",
        "gen_ai.request.model": "home-made-llm",
        "gen_ai.provider.name": "openai",
        "tenant.id": "acme",
        "nl2sql.node.name": "generate_sql",
    }
    (chat,) = [s for s in captured.spans() if s.name == "chat home-made-llm"]
    assert "gen_ai.usage.cost.amount" not in chat.attributes


def test_no_usage_reported_means_no_cost_and_no_unpriced_tokens(captured, audit_calls) -> None:
    _call("gpt-4o", None, None)
    _call("home-made-llm", None, None)
    metrics = captured.metrics()
    assert sc.LLM_COST not in metrics
    assert sc.LLM_UNPRICED_TOKENS not in metrics


def test_a_broken_price_table_never_breaks_the_call(captured, audit_calls, monkeypatch) -> None:
    class Exploding(PriceTable):
        def lookup(self, model: str) -> ModelPrice | None:
            raise RuntimeError("boom")

    use_price_table(Exploding({}))
    _call("gpt-4o", 10, 10)  # no exception reaches the app
    (chat,) = [s for s in captured.spans() if s.name == "chat gpt-4o"]
    assert chat.attributes["gen_ai.usage.input_tokens"] == 10
    assert chat.end_time is not None
    # everything else of the call is still recorded
    assert [c.kwargs["model"] for c in audit_calls] == ["gpt-4o"]
    assert sum(p.value for p in captured.points(sc.LLM_TOKENS)) == 20
