"""One scrubber for every sink (logs, spans, audit events). STUB: the forensics work replaces the bodies."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


def scrub(text: str) -> str:
    """Return `text` with secrets and PII replaced by `[REDACTED:kind]`. Never raises; idempotent."""
    return text


class ScrubbingSpanExporter(SpanExporter):
    """Wraps an exporter so that span attributes and events are scrubbed before it sees them."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export(spans)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
