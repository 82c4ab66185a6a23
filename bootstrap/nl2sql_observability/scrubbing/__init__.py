"""One scrubber for every sink: log lines, OTLP log records, span attributes and events, audit events.

`scrub(text)` replaces secrets and personal data with `[REDACTED:kind]`; it never raises and is
idempotent. The process-wide scrubber is built once from `OBSERVABILITY_SCRUB_*` settings; if they are
invalid, `scrub` falls back to the built-in rules (and reports the problem once in the log), while
`load_scrubber()` raises `ScrubConfigError` so start-up and the CLI can refuse the bad value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from nl2sql_observability.scrubbing._rules import MARKER_RE, marker
from nl2sql_observability.scrubbing._scrubber import Scrubber, ScrubConfigError
from nl2sql_observability.scrubbing._stream import scrub_stream
from nl2sql_observability.scrubbing.exporters import ScrubbingSpanExporter, scrub_span
from nl2sql_observability.scrubbing.settings import ScrubSettings, load_scrub_settings, load_scrubber

from ..forksafe import ForkSafeLock

__all__ = [
    "CUT_REACH_CHARS",
    "MARKER_RE",
    "MAX_TELEMETRY_CHARS",
    "ScrubConfigError",
    "ScrubSettings",
    "Scrubber",
    "ScrubbingSpanExporter",
    "cap_text",
    "get_scrubber",
    "load_scrub_settings",
    "load_scrubber",
    "marker",
    "scrub",
    "scrub_capped",
    "scrub_span",
    "scrub_stream",
    "scrub_value",
    "scrub_value_capped",
    "set_scrubber",
]

_log = logging.getLogger("nl2sql_observability.scrubbing")
_lock = ForkSafeLock()
_scrubber: Scrubber | None = None


def get_scrubber() -> Scrubber:
    """The process-wide scrubber: the one `set_scrubber` was handed (`settings.use_settings` does
    that), else built on first use from the environment."""
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


# Log and span text longer than this is cut (with a visible marker) after it is scrubbed: only the
# first MAX_TELEMETRY_CHARS + CUT_REACH_CHARS characters are scrubbed, so one huge log `extra` field
# or span attribute costs bounded time in the app's thread, and the cut never falls inside a match.
MAX_TELEMETRY_CHARS = 32 * 1024
# More than the reach of any built-in rule (a PEM body is at most 16 KB, a quoted value 4 KB), so a
# secret lying across the cut is seen whole; the same margin the stream scrubber keeps.
CUT_REACH_CHARS = 20 * 1024
TRUNCATION_MARKER = "…[TRUNCATED: {n} more chars]"


def cap_text(text: str, limit: int = MAX_TELEMETRY_CHARS) -> str:
    """`text` cut to `limit` characters plus a `…[TRUNCATED: N more chars]` marker when longer
    (no scrubbing: for text that is already scrubbed)."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(n=len(text) - limit)


def scrub_capped(text: str, limit: int = MAX_TELEMETRY_CHARS) -> str:
    """Scrub, then cut: what log and span text goes through. The cut is at input character `limit`,
    moved past a replaced region that covers it, so no secret is split by it."""
    if not isinstance(text, str):
        return text
    scrubber = get_scrubber()
    if len(text) <= limit:
        return scrubber.scrub(text)
    out, regions = scrubber.scrub_regions(text[: limit + CUT_REACH_CHARS])
    cut_in, cut_out = limit, limit
    for _, out_end, in_start, in_end in regions:
        if in_end <= limit:
            cut_out = limit + out_end - in_end
        elif in_start < limit:  # the cut falls inside a region: keep the region whole
            cut_in, cut_out = in_end, out_end
            break
        else:
            break
    return out[:cut_out] + TRUNCATION_MARKER.format(n=len(text) - cut_in)


def scrub_value_capped(value: Any, limit: int = MAX_TELEMETRY_CHARS) -> Any:
    """`scrub_value` with every string scrubbed, then cut (`scrub_capped`)."""
    if isinstance(value, str):
        return scrub_capped(value, limit)
    if isinstance(value, Mapping):
        return {k: scrub_value_capped(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        scrubbed = [scrub_value_capped(v, limit) for v in value]
        return tuple(scrubbed) if isinstance(value, tuple) else scrubbed
    return value
