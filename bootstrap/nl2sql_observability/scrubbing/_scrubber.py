"""The `Scrubber`: built-in rules + configured extra patterns and allow-list."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from nl2sql_observability.errors import ConfigurationError
from nl2sql_observability.scrubbing._edits import Edit, Region, apply_edits, compose
from nl2sql_observability.scrubbing._rules import (
    KIND_RE,
    MARKER_PREFIX,
    MARKER_RE,
    Allowed,
    Rule,
    build_rules,
    marker,
)
from nl2sql_observability.scrubbing._timed import PatternError, TimedPattern

_log = logging.getLogger("nl2sql_observability.scrubbing")

_DIGIT = re.compile(r"\d")
# A scrubbed value: the fail-closed result when a rule itself fails on some input.
SCRUB_ERROR = marker("scrub_error")
_CACHE_MAX_LEN = 256
# Values an allow-list entry must not all match: one that does would keep every secret.
_ALLOW_PROBES = (
    "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0",
    "hunter2",
    "jane.doe@example.com",
    "4111111111111111",
    "AKIAIOSFODNN7EXAMPLE",
    "203.0.113.5",
)


class ScrubConfigError(ConfigurationError):
    """A scrubbing setting is invalid; the message names the variable, the value and the problem."""


class Scrubber:
    """Replaces secrets and personal data in text with `[REDACTED:kind]`.

    `extra_patterns`: kind -> regex (or a plain list of regexes, kind `custom`); if a pattern has a
    group named `secret`, only that group is redacted. Extra patterns run with a time bound; one that
    exceeds it is disabled (reported once, naming it) and the text it was running on is redacted
    whole. `allow`: regexes; a detected value that fully matches one of them is kept (an entry that
    matches any value is refused). `scrub_ip`: redact IPv4/IPv6 addresses (loopback kept).
    """

    def __init__(
        self,
        *,
        extra_patterns: Mapping[str, str] | Sequence[str] = (),
        allow: Sequence[str] = (),
        scrub_ip: bool = True,
        setting_names: tuple[str, str] = ("extra_patterns", "allow"),
    ) -> None:
        self.scrub_ip = scrub_ip
        self._rules: list[Rule] = build_rules(scrub_ip=scrub_ip)
        items = (
            extra_patterns.items()
            if isinstance(extra_patterns, Mapping)
            else [("custom", p) for p in extra_patterns]
        )
        self._extra: list[tuple[str, TimedPattern]] = []
        for kind, source in items:
            if not KIND_RE.match(kind):
                raise ScrubConfigError(
                    f"{setting_names[0]}: kind {kind!r} must match {KIND_RE.pattern}"
                    " (it becomes [REDACTED:kind])"
                )
            _check_source(source, setting_names[0])
            try:
                self._extra.append((kind, TimedPattern(source)))
            except PatternError as exc:
                raise ScrubConfigError(f"{setting_names[0]}: {source!r} {exc}") from None
        self._extra_lock = threading.Lock()
        self._allow = [_compile(p, setting_names[1]) for p in allow]
        for source, pattern in zip(allow, self._allow, strict=True):
            if all(pattern.fullmatch(probe) for probe in _ALLOW_PROBES):
                raise ScrubConfigError(
                    f"{setting_names[1]}: {source!r} matches any value, so nothing would be redacted;"
                    " list only the exact values to keep, e.g. test@example\\.com"
                )
        self._allowed: Allowed = self._is_allowed if self._allow else _never
        self._cached = lru_cache(maxsize=8192)(self._scrub_uncached)

    def _is_allowed(self, value: str) -> bool:
        return any(p.fullmatch(value) for p in self._allow)

    def scrub(self, text: str) -> str:
        """Return `text` scrubbed. Never raises; scrubbing the result again changes nothing."""
        if not isinstance(text, str):  # defensive: callers pass attribute values straight through
            return text
        if len(text) <= _CACHE_MAX_LEN:
            return self._cached(text)
        return self._scrub_uncached(text)

    def _scrub_uncached(self, text: str) -> str:
        return self.scrub_regions(text)[0]

    def scrub_regions(self, text: str) -> tuple[str, list[Region]]:
        """The scrubbed text and the regions of `text` that were replaced (see `_edits`).

        Passes repeat until one changes nothing (a fixed point), so the result is idempotent by
        construction. Every pass replaces unredacted text by shorter or equal-length markers that no
        rule matches again, so the repetition ends; the bound below is only a guard (fail closed)."""
        regions: list[Region] = []
        try:
            for _ in range(len(text) + 2):
                edits = self._one_pass(text)
                regions = compose(regions, edits)
                new = apply_edits(text, edits) if _changes(text, edits) else text
                if new == text:
                    return text, regions
                text = new
        except Exception:  # never raise into a log call or an exporter; fail closed
            _log.debug("scrubber failed on a value of %d chars; replaced it", len(text), exc_info=True)
        return SCRUB_ERROR, [(0, len(SCRUB_ERROR), 0, len(text))]

    def _one_pass(self, text: str) -> list[Edit]:
        """All edits of one pass over `text`: each rule runs on the previous rule's output, and the
        edits of the whole pass are returned in `text` coordinates."""
        if not text:
            return []
        regions: list[Region] = []
        original = text
        has_digit: bool | None = None
        lowered: str | None = None
        allowed = self._allowed
        for rule in self._rules:
            if rule.needles and not any(n in text for n in rule.needles):
                continue
            if rule.needles_lower:
                if lowered is None:
                    lowered = text.lower()
                if not any(n in lowered for n in rule.needles_lower):
                    continue
            if rule.prefilter is not None and not rule.prefilter(text):
                continue
            if rule.needs_digit:
                if has_digit is None:
                    has_digit = _DIGIT.search(text) is not None
                if not has_digit:
                    continue
            edits = rule.apply(text, allowed) if rule.apply is not None else _rule_edits(rule, text, allowed)
            if edits:
                regions = compose(regions, edits)
                if _changes(text, edits):
                    text = apply_edits(text, edits)
                    lowered = None
        for kind, pattern in list(self._extra):
            edits = self._extra_edits(kind, pattern, text)
            if edits:
                regions = compose(regions, edits)
                if _changes(text, edits):
                    text = apply_edits(text, edits)
        # One pass as a single set of edits on its input: each region becomes one edit.
        return [(ins, ine, text[cs:ce]) for cs, ce, ins, ine in regions] if regions else _same(original, text)

    def _extra_edits(self, kind: str, pattern: TimedPattern, text: str) -> list[Edit]:
        protected = [m.span() for m in MARKER_RE.finditer(text)] if MARKER_PREFIX in text else []
        repl = marker(kind)
        edits: list[Edit] = []
        try:
            for m_start, m_end, start, end in pattern.spans(text):
                whole = text[m_start:m_end]  # kept matches too: see `_rule_edits`
                if (
                    start == end
                    or any(s < end and start < e for s, e in protected)
                    or self._allowed(text[start:end])
                ):
                    edits.append((m_start, m_end, whole))
                else:
                    edits.append((m_start, m_end, text[m_start:start] + repl + text[end:m_end]))
        except TimeoutError:
            self._disable(kind, pattern, len(text))
            return [(0, len(text), SCRUB_ERROR)] if text != SCRUB_ERROR else []
        return edits

    def _disable(self, kind: str, pattern: TimedPattern, size: int) -> None:
        with self._extra_lock:
            if (kind, pattern) not in self._extra:
                return
            self._extra = [item for item in self._extra if item != (kind, pattern)]
        _log.error(
            "scrubbing pattern %s=%r disabled: it ran longer than its time bound on a text of %d chars"
            " (that text was redacted whole); fix it in OBSERVABILITY_SCRUB_EXTRA_PATTERNS",
            kind,
            pattern.source,
            size,
        )

    def scrub_value(self, value: Any) -> Any:
        """Scrub strings inside dicts, lists and tuples (for JSON documents and attribute values)."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {k: self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            scrubbed = [self.scrub_value(v) for v in value]
            return tuple(scrubbed) if isinstance(value, tuple) else scrubbed
        return value


def _same(original: str, text: str) -> list[Edit]:
    return [] if text == original else [(0, len(original), text)]


def _changes(text: str, edits: list[Edit]) -> bool:
    """Whether `edits` change `text` (an edit may keep its match: see `_rule_edits`)."""
    return any(new != text[start:end] for start, end, new in edits)


def _rule_edits(rule: Rule, text: str, allowed: Allowed) -> list[Edit]:
    """One edit per match, spanning the whole match, also for a match that is kept (an identity
    edit): the stream scrubber never cuts inside any match, because the match consumed that text and
    the search resumed after it."""
    replacer = rule.replacer
    assert replacer is not None
    return [(m.start(), m.end(), replacer(m, allowed)) for m in rule.pattern.finditer(text)]


def _never(_value: str) -> bool:
    return False


def _check_source(source: object, setting: str) -> None:
    if not isinstance(source, str) or not source:
        raise ScrubConfigError(f"{setting}: {source!r} is not a non-empty regular expression")


def _compile(source: str, setting: str) -> re.Pattern[str]:
    _check_source(source, setting)
    try:
        return re.compile(source)
    except re.error as exc:
        raise ScrubConfigError(f"{setting}: {source!r} is not a valid regular expression: {exc}") from None
