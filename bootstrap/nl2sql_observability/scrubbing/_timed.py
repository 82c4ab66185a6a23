"""Users' extra patterns, run by the `regex` module with a time limit (the stdlib `re` has none)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Hostile-looking texts every user pattern must finish on quickly at start-up: runs of one
# character class ending in a character that forces backtracking, as in `(a+)+$` on `aaaa…!`.
_PROBES = (*(ch * 64 + "!" for ch in "a0 _-.@/A"), "aA0_-. @:/=" * 16 + "\x00")
PROBE_SECONDS = 0.05
# Time allowed for one text: a floor plus a per-character budget far above any linear pattern's cost.
_BASE_SECONDS = 0.1
_SECONDS_PER_CHAR = 2e-6


class PatternError(ValueError):
    """The pattern does not compile, or it runs too long on a probe text."""


class TimedPattern:
    """A compiled user pattern whose searches stop with `TimeoutError` after a time bound."""

    def __init__(self, source: str) -> None:
        import regex  # type: ignore[import-untyped,unused-ignore]

        self.source = source
        try:
            self._pattern: Any = regex.compile(source)
        except regex.error as exc:
            raise PatternError(f"is not a valid regular expression: {exc}") from None
        self.has_secret_group = "secret" in self._pattern.groupindex
        for probe in _PROBES:
            try:
                for _ in self._pattern.finditer(probe, timeout=PROBE_SECONDS):
                    pass
            except TimeoutError:
                raise PatternError(
                    f"takes longer than {PROBE_SECONDS}s on a {len(probe)}-character text"
                    " (catastrophic backtracking, e.g. nested repeats like (a+)+); rewrite it"
                ) from None

    def spans(self, text: str) -> Iterator[tuple[int, int, int, int]]:
        """(match start, match end, redact start, redact end) of each match; raises `TimeoutError`."""
        timeout = _BASE_SECONDS + len(text) * _SECONDS_PER_CHAR
        for m in self._pattern.finditer(text, timeout=timeout):
            start, end = m.span("secret") if self.has_secret_group else m.span()
            yield m.start(), m.end(), start, end
