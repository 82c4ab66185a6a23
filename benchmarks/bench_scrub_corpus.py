"""Recall and keep of our scrubber on our corpus, beside detect-secrets' and presidio's on the same cases.

Run: `.venv/bin/pip install detect-secrets presidio-analyzer` (benchmark-time only, not dependencies
of the package), then `.venv/bin/python benchmarks/bench_scrub_corpus.py`. A tool that is not
installed is skipped. Recall: the share of secrets gone once each tool's findings are redacted; keep:
the share of clean texts with no finding. presidio runs its English pattern recognizers only (e-mail,
card, IBAN, IP, phone, SSN, URL, ...): its NLP recognizer needs a spaCy model that PyPI does not serve.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from nl2sql_observability.scrubbing import Scrubber

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from test_scrub_corpus import load_corpus

Redactor = Callable[[str], str]


def _redact_spans(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in sorted(spans):
        if start < last:
            start = last
        if end <= start:
            continue
        out += [text[last:start], "[X]"]
        last = end
    return "".join(out) + text[last:]


def detect_secrets_redactor() -> Redactor | None:
    """detect-secrets as its CLI scans a file (plugins, entropy limits and filters of its defaults)."""
    try:
        from detect_secrets import SecretsCollection
        from detect_secrets.settings import default_settings
    except ImportError:
        return None

    def redact(text: str) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "case.txt"
            path.write_text(text, encoding="utf-8")
            secrets = SecretsCollection()
            with default_settings():
                secrets.scan_file(str(path))
            spans = []
            lines = _lines(text)
            for _, found in secrets:
                line_start, line = lines[found.line_number - 1]
                value = found.secret_value or ""
                at = line.find(value) if value else -1
                if at >= 0:
                    spans.append((line_start + at, line_start + at + len(value)))
        return _redact_spans(text, spans)

    return redact


def presidio_redactor() -> Redactor | None:
    try:
        from presidio_analyzer import PatternRecognizer, RecognizerRegistry
    except ImportError:
        return None
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)  # no network: its bundled suffix list
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(languages=["en"])
    recognizers = [r for r in registry.recognizers if isinstance(r, PatternRecognizer)]

    def redact(text: str) -> str:
        spans = []
        for recognizer in recognizers:
            for result in recognizer.analyze(text, recognizer.supported_entities, None):
                spans.append((result.start, result.end))
        return _redact_spans(text, spans)

    return redact


def _lines(text: str) -> list[tuple[int, str]]:
    out, pos = [], 0
    for line in text.split("\n"):
        out.append((pos, line))
        pos += len(line) + 1
    return out


def evaluate(redact: Redactor) -> dict[str, tuple[int, int]]:
    """Category -> (correct, total): secret gone (recall) or text untouched (keep)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in load_corpus():
        text, secret = str(row["text"]), row["secret"]
        out = redact(text)
        ok = str(secret) not in out if secret else out == text
        counts[str(row["category"])][0] += int(ok)
        counts[str(row["category"])][1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def main() -> None:
    tools: dict[str, Redactor | None] = {
        "ours (RE2)": Scrubber().scrub,
        "detect-secrets 1.5 (default plugins)": detect_secrets_redactor(),
        "presidio-analyzer (pattern recognizers)": presidio_redactor(),
    }
    results = {name: evaluate(fn) for name, fn in tools.items() if fn is not None}
    for name, fn in tools.items():
        if fn is None:
            print(f"{name}: not installed, skipped")
    rows = load_corpus()
    secret_categories = sorted({str(r["category"]) for r in rows if r["secret"]})
    keep_categories = sorted({str(r["category"]) for r in rows if not r["secret"]})
    names = list(results)
    print(f"{'category':22s}" + "".join(f"{n[:26]:>28s}" for n in names))
    for label, categories in (("recall", secret_categories), ("keep", keep_categories)):
        for category in categories:
            cells = []
            for n in names:
                ok, total = results[n][category]
                cells.append(f"{ok}/{total} {ok / total:5.2f}")
            print(f"{label + ' ' + category:22s}" + "".join(f"{c:>28s}" for c in cells))
        totals = []
        for n in names:
            ok = sum(results[n][c][0] for c in categories)
            total = sum(results[n][c][1] for c in categories)
            totals.append(f"{ok}/{total} {ok / total:5.3f}")
        print(f"{label + ' (all)':22s}" + "".join(f"{c:>28s}" for c in totals))


if __name__ == "__main__":
    main()
