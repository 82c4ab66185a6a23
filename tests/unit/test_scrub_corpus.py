"""Recall and keep on our own corpus (`data/scrub_corpus.jsonl`), on RE2 and on the fallback.

Each line: a category, a text, and the secret in it (null: the text must come out unchanged).
Recall: the share of secrets that are gone from the output; keep: the share of clean texts that
come out byte for byte. `benchmarks/bench_scrub_corpus.py` prints the same figures beside
detect-secrets' and presidio's."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from nl2sql_observability.scrubbing import Scrubber
from nl2sql_observability.scrubbing._engine import PythonEngine, Re2Engine

CORPUS = Path(__file__).parent / "data" / "scrub_corpus.jsonl"
KEEP_CATEGORIES = ("sql", "schema", "ids", "timestamps", "versions", "amounts")


def load_corpus() -> list[dict[str, str | None]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def scores(scrubber: Scrubber) -> dict[str, float]:
    """Category -> recall (categories with secrets) or keep (categories without)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for row in load_corpus():
        text, secret = str(row["text"]), row["secret"]
        out = scrubber.scrub(text)
        hits[str(row["category"])].append(secret not in out if secret else out == text)
    return {category: sum(ok) / len(ok) for category, ok in hits.items()}


def test_the_corpus_is_large_and_covers_the_keep_categories() -> None:
    rows = load_corpus()
    assert len(rows) >= 300
    categories = {row["category"] for row in rows if row["secret"] is None}
    assert set(KEEP_CATEGORIES) <= categories
    for row in rows:
        assert row["secret"] is None or str(row["secret"]) in str(row["text"])


@pytest.mark.parametrize("engine", [Re2Engine(), PythonEngine()], ids=["re2", "python-re"])
def test_recall_and_keep(engine: Re2Engine | PythonEngine) -> None:
    by_category = scores(Scrubber(engine=engine))
    low = {c: s for c, s in by_category.items() if s < 0.95}
    assert not low, f"recall or keep below 0.95: {low}"
    for category in KEEP_CATEGORIES:
        assert by_category[category] >= 0.95
