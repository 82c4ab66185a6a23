"""The `Scrubber`: built-in rules + configured extra patterns and allow-list."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from nl2sql_observability.scrubbing._rules import KIND_RE, MARKER_PREFIX, MARKER_RE, Rule, build_rules, marker

_log = logging.getLogger("nl2sql_observability.scrubbing")

_DIGIT = re.compile(r"\d")
# A scrubbed value: the fail-closed result when a rule itself fails on some input.
SCRUB_ERROR = marker("scrub_error")
# Above this size the fixpoint iteration is skipped (the single pass is already idempotent in practice).
_MAX_FIXPOINT_LEN = 1 << 20
_CACHE_MAX_LEN = 256


class ScrubConfigError(ValueError):
    """A scrubbing setting is invalid; the message names the variable, the value and the problem."""


class Scrubber:
    """Replaces secrets and personal data in text with `[REDACTED:kind]`.

    `extra_patterns`: kind -> regex (or a plain list of regexes, kind `custom`); if a pattern has a
    group named `secret`, only that group is redacted. `allow`: regexes; a detected value that fully
    matches one of them is kept. `scrub_ip`: redact IPv4/IPv6 addresses (loopback kept).
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
        self._extra: list[tuple[str, re.Pattern[str]]] = []
        for kind, source in items:
            if not KIND_RE.match(kind):
                raise ScrubConfigError(
                    f"{setting_names[0]}: kind {kind!r} must match {KIND_RE.pattern}"
                    " (it becomes [REDACTED:kind])"
                )
            self._extra.append((kind, _compile(source, setting_names[0])))
        self._allow = [_compile(p, setting_names[1]) for p in allow]
        self._allowed: Callable[[str], bool] = self._is_allowed if self._allow else _never
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
        try:
            out = self._one_pass(text)
            if out is not text and out != text and len(out) <= _MAX_FIXPOINT_LEN:
                for _ in range(3):
                    again = self._one_pass(out)
                    if again == out:
                        break
                    out = again
            return out
        except Exception:  # never raise into a log call or an exporter; fail closed
            _log.debug("scrubber failed on a value of %d chars; replaced it", len(text), exc_info=True)
            return SCRUB_ERROR

    def _one_pass(self, text: str) -> str:
        if not text:
            return text
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
            if rule.apply is not None:
                new = rule.apply(text, allowed)
            else:
                replacer = rule.replacer
                assert replacer is not None
                new = rule.pattern.sub(lambda m, r=replacer: r(m, allowed), text)  # type: ignore[misc]
            if new != text:
                text = new
                lowered = None
        for kind, pattern in self._extra:
            text = self._apply_extra(kind, pattern, text)
        return text

    def _apply_extra(self, kind: str, pattern: re.Pattern[str], text: str) -> str:
        protected = [m.span() for m in MARKER_RE.finditer(text)] if MARKER_PREFIX in text else []
        repl = marker(kind)
        has_secret_group = "secret" in pattern.groupindex

        def replace(m: re.Match[str]) -> str:
            start, end = m.span("secret") if has_secret_group else m.span()
            if start == end or any(s < end and start < e for s, e in protected):
                return m.group(0)
            value = text[start:end]
            if self._allowed(value):
                return m.group(0)
            base = m.start()
            whole = m.group(0)
            return whole[: start - base] + repl + whole[end - base :]

        return pattern.sub(replace, text)

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

    def scrub_lines(self, lines: Iterable[str]) -> Iterable[str]:
        from nl2sql_observability.scrubbing._stream import scrub_stream_lines

        return scrub_stream_lines(self, lines)


def _never(_value: str) -> bool:
    return False


def _compile(source: str, setting: str) -> re.Pattern[str]:
    if not isinstance(source, str) or not source:
        raise ScrubConfigError(f"{setting}: {source!r} is not a non-empty regular expression")
    try:
        return re.compile(source)
    except re.error as exc:
        raise ScrubConfigError(f"{setting}: {source!r} is not a valid regular expression: {exc}") from None
