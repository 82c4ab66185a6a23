"""The `Scrubber`: built-in rules + configured extra patterns and allow-list, in one linear scan.

One pass: a single alternation of every rule's candidate pattern is scanned once (RE2); each
candidate is confirmed by its rule's precise pattern and validator (Luhn, IBAN, SSN ranges, phone
lengths, ...) anchored at its start. A confirmed match is replaced and the scan resumes after it; a
rejected one lets the next rules try the same start (an anchored match), then the scan resumes one
character later. No second pass: a rule's left context right after a replaced region is checked as
the scrubbed output will read (`]`), and a match rejected only because a replaced region follows it
is accepted when that region is, so scrubbing the output again changes nothing.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nl2sql_observability.errors import ConfigurationError
from nl2sql_observability.scrubbing._edits import Edit, Region, apply_edits
from nl2sql_observability.scrubbing._engine import (
    Compiled,
    Engine,
    PatternRefused,
    PythonEngine,
    ScanStats,
    default_engine,
    project,
)
from nl2sql_observability.scrubbing._rules import (
    KIND_RE,
    MARKER_CANDIDATE,
    MARKER_PREFIX,
    MARKER_RE,
    Rule,
    build_rules,
    marker,
)
from nl2sql_observability.scrubbing._samples import POSITIVE_SAMPLES

_log = logging.getLogger("nl2sql_observability.scrubbing")

# A scrubbed value: the fail-closed result when a rule itself fails on some input.
SCRUB_ERROR = marker("scrub_error")
_CACHE_MAX_LEN = 256
_MARKER_REACH = 64  # longer than any marker: how far around a user match to look for one
_PENDING_MAX = 8
_BACK_REACH = 128  # how far before its anchor a match may start (an e-mail's local part: 64)


class ScrubConfigError(ConfigurationError):
    """A scrubbing setting is invalid; the message names the variable, the value and the problem."""


@dataclass(frozen=True)
class _UserPattern:
    kind: str
    source: str
    compiled: Compiled
    secret_group: int | None


_MARKER = object()  # the alternative that consumes an existing `[REDACTED:kind]`
Alternative = Rule | _UserPattern | object


class Scrubber:
    """Replaces secrets and personal data in text with `[REDACTED:kind]`.

    `extra_patterns`: kind -> regex (or a plain list of regexes, kind `custom`); if a pattern has a
    group named `secret`, only that group is redacted. They run on the same linear-time engine as
    the built-in rules, so one that engine cannot run (look-arounds, back-references) is refused here,
    naming it, and a pattern accepted here stays on for the life of the process. `allow`: regexes; a
    detected value that fully matches one of them is kept (an entry matching any of the scrubber's
    own sample secrets is refused). `scrub_ip`: redact IPv4/IPv6 addresses (loopback kept).
    `engine`: RE2 when `google-re2` is installed, else Python's `re` (for tests: either).
    """

    def __init__(
        self,
        *,
        extra_patterns: Mapping[str, str] | Sequence[str] = (),
        allow: Sequence[str] = (),
        scrub_ip: bool = True,
        setting_names: tuple[str, str] = ("extra_patterns", "allow"),
        engine: Engine | None = None,
    ) -> None:
        self.scrub_ip = scrub_ip
        self.engine: Engine = engine if engine is not None else default_engine()
        items = (
            extra_patterns.items()
            if isinstance(extra_patterns, Mapping)
            else [("custom", p) for p in extra_patterns]
        )
        users = [self._user_pattern(kind, source, setting_names[0]) for kind, source in items]
        self._alts: list[Alternative] = [_MARKER, *build_rules(scrub_ip=scrub_ip), *users]
        sources = [MARKER_CANDIDATE]
        free = [MARKER_CANDIDATE]
        # Users' patterns take effect after the built-in rules: every built-in candidate then starts
        # where its match starts (no anchors inside matches), so it wins at an equal or earlier start.
        self._anchored_candidates = not users
        for index, alt in enumerate(self._alts[1:], start=1):
            if isinstance(alt, Rule):
                full = alt.full_candidate if alt.full_candidate is not None and users else None
                candidate = full if full is not None else alt.candidate
                if alt.not_after is not None:
                    sources.append(f"(?:^|[^{alt.not_after}])(?:{candidate})")
                    free.append(f"(?:[^{alt.not_after}])?(?:{candidate})")
                else:
                    sources.append(candidate)
                    free.append(candidate.replace(r"\b", ""))
            else:
                assert isinstance(alt, _UserPattern)
                sources.append(_renamed_groups(alt.source, index))
                free.append(sources[-1])
        try:
            self._multi = self.engine.multi(sources, free)
        except PatternRefused as exc:
            raise ScrubConfigError(
                f"{setting_names[0]}: the patterns together are too large for the {self.engine.name} engine"
                f" ({exc}); use fewer or simpler patterns"
            ) from None
        self._allow = [self._allow_entry(p, setting_names[1]) for p in allow]
        extra = dict(extra_patterns) if isinstance(extra_patterns, Mapping) else list(extra_patterns)
        self._config = (extra, list(allow), scrub_ip, setting_names)
        self._exit_scrubber: Scrubber | None = None
        self._exit_lock = threading.Lock()
        self._cached = lru_cache(maxsize=8192)(self._scrub_uncached)
        self._patterns = (sources, free, list(allow))
        _LIVE.add(self)

    def _recompile(self) -> None:
        """New RE2 objects, in a forked child: another thread of the parent may have held an RE2
        object's internal lock at the fork, which the child's copy would then wait on for ever."""
        sources, free, allow = self._patterns
        self._multi = self.engine.multi(sources, free)
        self._alts = [
            _UserPattern(alt.kind, alt.source, self.engine.compile(alt.source), alt.secret_group)
            if isinstance(alt, _UserPattern)
            else alt
            for alt in self._alts
        ]
        self._allow = [self.engine.compile(f"(?:{source})\\z") for source in allow]
        self._exit_lock = threading.Lock()

    # --- configuration ------------------------------------------------------------------------

    def _user_pattern(self, kind: str, source: object, setting: str) -> _UserPattern:
        if not isinstance(kind, str) or not KIND_RE.match(kind):
            raise ScrubConfigError(
                f"{setting}: kind {kind!r} must match {KIND_RE.pattern} (it becomes [REDACTED:kind])"
            )
        _check_source(source, setting)
        assert isinstance(source, str)
        checked = _compile_python(source, setting)
        if not source.isascii():
            raise ScrubConfigError(
                f"{setting}: {kind}={source!r} has non-ASCII characters; the scan sees each non-ASCII"
                " character as one placeholder: match it with . or a negated class"
            )
        if checked.match("") is not None:
            raise ScrubConfigError(
                f"{setting}: {kind}={source!r} matches the empty text; make it match something"
            )
        try:
            compiled = self._compile_linear(source, source)
        except PatternRefused as exc:
            raise ScrubConfigError(
                f"{setting}: {kind}={source!r} cannot run in linear time ({exc}); rewrite it without"
                " look-arounds, back-references or nested repeats"
            ) from None
        return _UserPattern(kind, source, compiled, checked.groupindex.get("secret"))

    def _compile_linear(self, pattern: str, source: str) -> Compiled:
        """`pattern` on this scrubber's engine; PatternRefused unless it runs in linear time there
        (RE2 refuses what it cannot run; on `re`, the user's `source` must not backtrack)."""
        compiled = self.engine.compile(pattern)
        if self.engine.name != "re2":
            _refuse_backtracking(source)
        return compiled

    def _allow_entry(self, source: str, setting: str) -> Compiled:
        _check_source(source, setting)
        _compile_python(source, setting)
        try:
            compiled = self._compile_linear(f"(?:{source})\\z", source)
        except PatternRefused as exc:
            raise ScrubConfigError(
                f"{setting}: {source!r} cannot run in linear time ({exc}); list the exact values to keep,"
                " e.g. test@example\\.com"
            ) from None
        matched = [s for s in POSITIVE_SAMPLES if _fullmatch(compiled, s)]
        if matched:
            raise ScrubConfigError(
                f"{setting}: {source!r} matches secrets the scrubber must redact (e.g. {matched[0]!r}),"
                " so it would keep them; list only the exact values to keep, e.g. test@example\\.com"
            )
        return compiled

    def _allowed(self, value: str) -> bool:
        return any(_fullmatch(p, value) for p in self._allow)

    # --- scrubbing ----------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """Return `text` scrubbed. Never raises; scrubbing the result again changes nothing."""
        if not isinstance(text, str):  # defensive: callers pass attribute values straight through
            return text
        if len(text) <= _CACHE_MAX_LEN:
            return self._cached(text)
        return self._scrub_uncached(text)

    def _scrub_uncached(self, text: str) -> str:
        return self.scrub_regions(text)[0]

    def scrub_regions(self, text: str, stats: ScanStats | None = None) -> tuple[str, list[Region]]:
        """The scrubbed text and the regions of `text` that were replaced or kept whole (a match
        that the allow-list kept, an existing marker): (out_start, out_end, in_start, in_end)."""
        if self.engine.name != PythonEngine.name:
            with _IN_FLIGHT:
                exiting = _IN_FLIGHT.exiting
                if not exiting:
                    _IN_FLIGHT.count += 1
            if exiting:
                return self._at_exit(text, stats)
        try:
            edits = self._one_pass(text, stats)
            regions: list[Region] = []
            shift = 0
            for start, end, new in edits:
                regions.append((start + shift, start + shift + len(new), start, end))
                shift += len(new) - (end - start)
            changed = any(new != text[start:end] for start, end, new in edits)
            return (apply_edits(text, edits) if changed else text), regions
        except Exception:  # never raise into a log call or an exporter; fail closed
            _log.debug("scrubber failed on a value of %d chars; replaced it", len(text), exc_info=True)
        finally:
            if self.engine.name != PythonEngine.name:
                with _IN_FLIGHT:
                    _IN_FLIGHT.count -= 1
                    _IN_FLIGHT.notify_all()
        return SCRUB_ERROR, [(0, len(SCRUB_ERROR), 0, len(text))]

    def _at_exit(self, text: str, stats: ScanStats | None) -> tuple[str, list[Region]]:
        """After the exit handlers (`_wait_for_scans`), the same rules on Python's `re`: RE2 releases
        the GIL, and a daemon thread (an exporter's worker) that comes back from it into an
        interpreter already finalizing is ended inside C++, which aborts the process."""
        with self._exit_lock:
            if self._exit_scrubber is None:
                extra, allow, scrub_ip, names = self._config
                try:
                    self._exit_scrubber = Scrubber(
                        extra_patterns=extra,
                        allow=allow,
                        scrub_ip=scrub_ip,
                        setting_names=names,
                        engine=PythonEngine(),
                    )
                except ScrubConfigError:  # a user pattern `re` may not run in linear time: fail closed
                    self._exit_scrubber = _FAIL_CLOSED
            scrubber = self._exit_scrubber
        if scrubber is _FAIL_CLOSED:
            return SCRUB_ERROR, [(0, len(SCRUB_ERROR), 0, len(text))]
        return scrubber.scrub_regions(text, stats)

    def scan_stats(self, text: str) -> ScanStats:
        """What scrubbing `text` costs, in operations (passes, scans, anchored matches, confirms)."""
        stats = ScanStats()
        self.scrub_regions(text, stats)
        return stats

    def _one_pass(self, text: str, stats: ScanStats | None = None) -> list[Edit]:
        """Every edit, in order, from one scan of `text`."""
        if stats is None:
            stats = ScanStats()
        stats.passes += 1
        if not text:
            return []
        buf = project(text)
        size = len(buf)
        scanner = self._multi.scanner(buf)
        run = _Run(self, text, buf, stats)
        pos = 0
        recheck = -1  # one after a rejected candidate: a match may start there (see Rule.not_after)
        while pos < size:
            if pos in (run.last_end, recheck):  # after a region the output reads `]`: no left context
                stats.anchored += 1
                alternatives = scanner.alternatives_at(pos)
                if alternatives:
                    pos = run.last_end if run.candidates(pos, alternatives) else pos + 1
                    continue
            stats.searches += 1
            span = scanner.search(pos)
            if span is None:
                stats.scanned += size - pos
                break
            start, end = span
            stats.scanned += end - pos
            stats.anchored += 1
            alternatives = scanner.alternatives_at(start)
            if alternatives and run.candidates(start, alternatives):
                pos = run.last_end
            else:
                pos = recheck = start + 1
        return run.edits

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


_FAIL_CLOSED: Any = object()
_LIVE: weakref.WeakSet[Scrubber] = weakref.WeakSet()


class _InFlight(threading.Condition):
    """Scans on RE2 under way. At exit, once the other exit handlers registered after this module
    was imported have run (atexit runs the last registered first: the audit writer's drain and the
    telemetry flush still scrub on RE2), new scans run on `re` and we wait for those under way:
    a thread still inside RE2 when the interpreter finalizes would abort the process."""

    count = 0
    exiting = False


_IN_FLIGHT = _InFlight()
_EXIT_WAIT_S = 2.0


def _after_fork_in_child() -> None:
    global _IN_FLIGHT
    _IN_FLIGHT = _InFlight()
    for scrubber in list(_LIVE):
        try:
            scrubber._recompile()
        except Exception:  # never raise in the child: the scrubber then fails closed per value
            _log.debug("rebuilding the scrubber after fork failed", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _wait_for_scans() -> None:
    with _IN_FLIGHT:
        _IN_FLIGHT.exiting = True
        _IN_FLIGHT.wait_for(lambda: _IN_FLIGHT.count <= 0, _EXIT_WAIT_S)


class _Run:
    """The state of one scan: edits so far, where the last replaced region ends, recent rejections."""

    def __init__(self, scrubber: Scrubber, text: str, buf: bytes, stats: ScanStats) -> None:
        self.scrubber = scrubber
        self.text = text
        self.buf = buf
        self.stats = stats
        self.edits: list[Edit] = []
        self.last_end = -1
        self.state: dict[str, Any] = {}
        # (start, rule) of the last candidates rejected since the last region, for accepting one
        # that only failed because a region (its replacement) follows it
        self.pending: list[tuple[int, Rule]] = []
        self.kept = False

    def allowed(self, value: str) -> bool:
        ok = self.scrubber._allowed(value) if self.scrubber._allow else False
        self.kept = self.kept or ok
        return ok

    def candidates(self, start: int, alternatives: list[int]) -> bool:
        """Confirm the alternatives matching at `start`, in priority order, until one records a
        region (replaced or kept whole); True then, with `last_end` after it."""
        return any(self._confirm(start, alt) for alt in alternatives)

    def _confirm(self, start: int, alt: int) -> bool:
        self.stats.confirms += 1
        rule = self.scrubber._alts[alt]
        text = self.text
        if rule is _MARKER:
            found = MARKER_RE.match(text, start)
            if found is None:
                return False
            self._region(start, found.end(), found.group())
            return True
        self.kept = False
        if isinstance(rule, _UserPattern):
            return self._confirm_user(rule, start)
        assert isinstance(rule, Rule)
        if rule.confirm is not None:
            edit = rule.confirm(text, start, self.allowed, self.state)
            if edit is None or (edit[2] == text[edit[0] : edit[1]] and not self.kept):
                return False
            self._region(*edit)
            return True
        assert rule.pattern is not None
        assert rule.replacer is not None
        if rule.not_after is not None and start + 1 < len(text) and self._confirm_at(rule, start + 1):
            return True  # the candidate began with the character before the match
        return self._confirm_at(rule, start)

    def _confirm_at(self, rule: Rule, start: int) -> bool:
        text = self.text
        assert rule.pattern is not None
        assert rule.replacer is not None
        if rule.back is not None and self.scrubber._anchored_candidates:  # an anchor inside the match
            found = rule.back.search(text, max(0, start - _BACK_REACH, self.last_end), start)
            if found is None:
                return False
            start = found.start()
        pattern = rule.lead_free if start == self.last_end and rule.lead_free is not None else rule.pattern
        m = pattern.match(text, start)
        new = old = ""
        if m is not None and m.end() > start:
            new = rule.replacer(m, self.allowed)
            old = m.group(0)
        if new == old and not self.kept:  # no match, or kept: perhaps only for what follows it
            self.pending.append((start, rule))
            if len(self.pending) > _PENDING_MAX:
                del self.pending[0]
            return False
        assert m is not None
        end = m.end()
        kept_tail = new[new.rfind("]") + 1 :] if new != old else ""
        if kept_tail and old.endswith(kept_tail):  # text kept after the marker is scanned on
            end -= len(kept_tail)
            new = new[: -len(kept_tail)]
        self._region(start, end, new)
        return True

    def _confirm_user(self, rule: _UserPattern, start: int) -> bool:
        spans = rule.compiled.match(self.buf, start)
        if spans is None:
            return False
        m_start, m_end = spans[0]
        s, e = (m_start, m_end)
        if rule.secret_group is not None and spans[rule.secret_group][0] >= 0:
            s, e = spans[rule.secret_group]
        text = self.text
        if m_end == m_start or s == e or _touches_marker(text, m_start, m_end):
            return False
        if self.allowed(text[s:e]):
            self._region(m_start, m_end, text[m_start:m_end])
        else:
            self._region(m_start, m_end, text[m_start:s] + marker(rule.kind) + text[e:m_end])
        return True

    def _region(self, start: int, end: int, new: str) -> None:
        text = self.text
        if new != text[start:end]:
            for rejected_start, rule in self.pending:
                if rejected_start >= max(self.last_end, 0) and rule.pattern is not None:
                    free = rejected_start == self.last_end and rule.lead_free is not None
                    pattern = rule.lead_free if free and rule.lead_free is not None else rule.pattern
                    m = pattern.match(text, rejected_start, start)  # the region will read `[`
                    if m is not None and m.end() == start and rule.replacer is not None:
                        replaced = rule.replacer(m, self.allowed)
                        if replaced != m.group(0):
                            self.edits.append((rejected_start, start, replaced))
                            break
        self.pending.clear()
        self.edits.append((start, end, new))
        self.last_end = end


def _touches_marker(text: str, start: int, end: int) -> bool:
    if MARKER_PREFIX[0] not in text[max(0, start - _MARKER_REACH) : end + _MARKER_REACH]:
        return False
    for m in MARKER_RE.finditer(text, max(0, start - _MARKER_REACH), end + _MARKER_REACH):
        if m.start() < end and start < m.end():
            return True
    return False


def _fullmatch(compiled: Compiled, value: str) -> bool:
    return compiled.match(project(value), 0) is not None


_NAMED_GROUP = re.compile(r"\(\?P?<(?![=!])")


def _renamed_groups(source: str, index: int) -> str:
    """`source` with its named groups renamed, so that many user patterns fit in one alternation."""
    return _NAMED_GROUP.sub(lambda m: f"(?P<u{index}_", source)


def _refuse_backtracking(source: str) -> None:
    """Without RE2: refuse what Python's `re` may run in more than linear time (look-arounds,
    back-references, a repeat or an alternation inside a repeat), as RE2 would the first two."""
    try:
        from re import _parser as parser  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # Python 3.10
        import sre_parse as parser  # type: ignore[no-redef,unused-ignore]

    def walk(items: Any, in_repeat: bool) -> None:
        for op, arg in items:
            name = str(op)
            if name in ("ASSERT", "ASSERT_NOT", "GROUPREF", "GROUPREF_EXISTS"):
                raise PatternRefused(f"{name.lower()} is not supported")
            if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, high, sub = arg
                if in_repeat and high != low:
                    raise PatternRefused("a repeat inside a repeat")
                walk(sub, in_repeat or high != low)
            elif name == "SUBPATTERN":
                walk(arg[-1], in_repeat)
            elif name == "BRANCH":
                if in_repeat:
                    raise PatternRefused("an alternation inside a repeat")
                for branch in arg[1]:
                    walk(branch, in_repeat)
            elif name in ("ATOMIC_GROUP",):
                walk(arg, in_repeat)

    walk(parser.parse(source), False)


def _check_source(source: object, setting: str) -> None:
    if not isinstance(source, str) or not source:
        raise ScrubConfigError(f"{setting}: {source!r} is not a non-empty regular expression")


def _compile_python(source: str, setting: str) -> re.Pattern[str]:
    try:
        return re.compile(source)
    except (re.error, RecursionError) as exc:
        raise ScrubConfigError(f"{setting}: {source!r} is not a valid regular expression: {exc}") from None
