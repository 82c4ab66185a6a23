"""One scrubber for every sink: log lines, OTLP log records, span attributes and events, audit events.

`scrub(text)` replaces secrets and personal data with `[REDACTED:kind]`; it never raises and is
idempotent. The process-wide scrubber is built once from `OBSERVABILITY_SCRUB_*` settings; if they are
invalid, `scrub` falls back to the built-in rules (and reports the problem once in the log), while
`load_scrubber()` raises `ScrubConfigError` so start-up and the CLI can refuse the bad value.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from nl2sql_observability.scrubbing._rules import MARKER_RE, marker
from nl2sql_observability.scrubbing._scrubber import Scrubber, ScrubConfigError
from nl2sql_observability.scrubbing._stream import scrub_stream, scrub_stream_lines
from nl2sql_observability.scrubbing.exporters import ScrubbingSpanExporter, scrub_span
from nl2sql_observability.scrubbing.settings import ScrubSettings, load_scrubber

__all__ = [
    "MARKER_RE",
    "ScrubConfigError",
    "ScrubSettings",
    "Scrubber",
    "ScrubbingSpanExporter",
    "get_scrubber",
    "load_scrubber",
    "marker",
    "scrub",
    "scrub_span",
    "scrub_stream",
    "scrub_stream_lines",
    "scrub_value",
    "set_scrubber",
]

_log = logging.getLogger("nl2sql_observability.scrubbing")
_lock = threading.Lock()
_scrubber: Scrubber | None = None


def get_scrubber() -> Scrubber:
    """The process-wide scrubber, built on first use from the environment."""
    global _scrubber
    current = _scrubber
    if current is not None:
        return current
    with _lock:
        if _scrubber is None:
            try:
                _scrubber = load_scrubber()
            except ScrubConfigError as exc:
                _log.error("scrubbing settings ignored, using the built-in rules only: %s", exc)
                _scrubber = Scrubber()
        return _scrubber


def set_scrubber(scrubber: Scrubber | None) -> None:
    """Replace the process-wide scrubber (`None`: rebuild from the environment on next use)."""
    global _scrubber
    with _lock:
        _scrubber = scrubber


def scrub(text: str) -> str:
    """Return `text` with secrets and PII replaced by `[REDACTED:kind]`. Never raises; idempotent."""
    return get_scrubber().scrub(text)


def scrub_value(value: Any) -> Any:
    """Scrub every string inside nested dicts/lists/tuples."""
    return get_scrubber().scrub_value(value)
