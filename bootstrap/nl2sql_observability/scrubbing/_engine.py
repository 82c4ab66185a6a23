"""The regex engines the scrubber scans with: RE2 (linear time, from `google-re2`), else Python's `re`.

Both scan a byte projection of the text (`project`): ASCII characters as themselves and every other
character as one `\\x80` byte, so a byte offset is a character offset and no offset ever needs
mapping back. RE2 runs in Latin-1 mode on it (one byte, one character). The fallback compiles the
same patterns with `re` on the same bytes; the built-in patterns have no nested repeats, but only
RE2 guarantees linear time, and only RE2 can refuse a user pattern that would not run in it.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any, Protocol

try:  # imported with the package, not on first use: a fork while another thread is importing it
    import re2 as _re2  # type: ignore[import-untyped,unused-ignore]  # leaves the child a half-imported module
except ImportError:  # no wheel for this platform: the `re` fallback
    _re2 = None

PLACEHOLDER = b"\x80"


def _placeholder(exc: UnicodeError) -> tuple[bytes, int]:
    assert isinstance(exc, UnicodeEncodeError)
    return PLACEHOLDER * (exc.end - exc.start), exc.end


codecs.register_error("nl2sql_scrub_placeholder", _placeholder)


def project(text: str) -> bytes:
    """`text` as bytes with one byte per character (non-ASCII characters become `\\x80`)."""
    return text.encode("ascii", "nl2sql_scrub_placeholder")


class PatternRefused(ValueError):
    """The engine cannot run this pattern (in linear time)."""


@dataclass
class ScanStats:
    """What one scrub cost, in operations (the linear-time test bounds these, never the time)."""

    passes: int = 0
    searches: int = 0  # unanchored scans
    anchored: int = 0  # anchored matches at a candidate's start
    scanned: int = 0  # bytes the unanchored scans covered (from their start to the match end)
    confirms: int = 0  # rule checks run on candidates

    def add(self, other: ScanStats) -> None:
        for name in ("passes", "searches", "anchored", "scanned", "confirms"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


Span = tuple[int, int]


class Compiled(Protocol):
    """One pattern with its groups: `match` returns the spans of group 0..n (-1, -1 when unset)."""

    def match(self, buf: bytes, pos: int) -> tuple[Span, ...] | None: ...


class Scanner(Protocol):
    """Many alternatives over one text: the leftmost candidate of any, and which match at a start."""

    def search(self, pos: int) -> Span | None: ...

    def alternatives_at(self, pos: int) -> list[int]: ...


class Multi(Protocol):
    def scanner(self, buf: bytes) -> Scanner: ...


class Engine(Protocol):
    name: str

    def compile(self, pattern: str) -> Compiled: ...

    def multi(self, sources: list[str], free: list[str]) -> Multi:
        """`sources` for the unanchored scan; `free[i]`: alternative i without its left context,
        for the anchored check of which alternatives match at a start."""
        ...


class _Re2Compiled:
    def __init__(self, regexp: Any, anchor: Any) -> None:
        self._match = regexp.Match
        self._anchor = anchor

    def match(self, buf: bytes, pos: int) -> tuple[Span, ...] | None:
        spans = self._match(self._anchor, buf, pos, len(buf))
        return None if spans[0][0] < 0 else tuple(spans)


class _Re2Scanner:
    def __init__(self, multi: _Re2Multi, buf: bytes) -> None:
        self._search = multi.scan.Match
        self._set = multi.set.Match
        self._unanchored = multi.unanchored
        self._buf = buf
        self._view = memoryview(buf)

    def search(self, pos: int) -> Span | None:
        span: Span = self._search(self._unanchored, self._buf, pos, len(self._buf))[0]
        return None if span[0] < 0 else span

    def alternatives_at(self, pos: int) -> list[int]:
        return sorted(self._set(self._view[pos:]))


class _Re2Multi:
    """One alternation without captures (RE2's DFA alone finds a candidate's bounds), and an
    anchored RE2::Set of the same alternatives that says which of them match at a start."""

    def __init__(self, engine: Re2Engine, sources: list[str], free: list[str]) -> None:
        re2 = engine.re2
        self.unanchored = re2._Anchor.UNANCHORED
        # Longest-match semantics: the DFA alone gives the bounds (leftmost-first would need RE2's
        # NFA for the end); only the start is used, and the leftmost start is the same either way.
        self.scan = engine.raw("|".join(f"(?:{s})" for s in sources), capture=False, longest=True)
        self.set = re2._re2.Set(re2._Anchor.ANCHOR_START, engine.options(capture=False))
        for source in free:
            if self.set.Add(source.encode("latin-1")) < 0:
                raise PatternRefused(f"RE2 cannot compile {source!r}")
        if not self.set.Compile():
            raise PatternRefused("RE2 cannot compile the patterns together (too large)")

    def scanner(self, buf: bytes) -> Scanner:
        return _Re2Scanner(self, buf)


class Re2Engine:
    """RE2 through `google-re2`'s binding, called on bytes so no call re-encodes the text (its
    `str` API encodes the whole text on every `search`, which makes resumed scans quadratic)."""

    name = "re2"
    # Room for hundreds of user patterns in one program; RE2 falls back from its DFA to its
    # (still linear) NFA when a scan's DFA cache fills, it never grows past this.
    MAX_MEM = 64 << 20

    def __init__(self) -> None:
        if _re2 is None:
            raise ImportError("google-re2 is not installed")
        self.re2 = _re2

    def options(self, *, capture: bool, longest: bool = False) -> Any:
        options = self.re2.Options()
        options.encoding = self.re2.Options.Encoding.LATIN1
        options.max_mem = self.MAX_MEM
        options.log_errors = False
        options.never_capture = not capture
        options.longest_match = longest
        return options

    def raw(self, pattern: str, *, capture: bool = True, longest: bool = False) -> Any:
        regexp = self.re2._re2.RE2(pattern.encode("latin-1"), self.options(capture=capture, longest=longest))
        if not regexp.ok():
            raise PatternRefused(regexp.error())
        return regexp

    def compile(self, pattern: str) -> Compiled:
        return _Re2Compiled(self.raw(pattern), self.re2._Anchor.ANCHOR_START)

    def multi(self, sources: list[str], free: list[str]) -> Multi:
        return _Re2Multi(self, sources, free)


class _ReCompiled:
    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self._pattern = pattern

    def match(self, buf: bytes, pos: int) -> tuple[Span, ...] | None:
        m = self._pattern.match(buf, pos)
        return None if m is None else m.regs


_NONE: Span = (-1, -1)


class _ReScanner:
    """Each alternative searched on its own, its next match cached until the scan passes its start:
    every alternative covers the text about once (Python's `re` is slow on one big alternation)."""

    def __init__(self, multi: _ReMulti, buf: bytes) -> None:
        self._multi = multi
        self._buf = buf
        self._next: list[Span | None] = [None] * len(multi.patterns)

    def search(self, pos: int) -> Span | None:
        best: Span | None = None
        for i, pattern in enumerate(self._multi.patterns):
            found = self._next[i]
            if found is None or (found[0] >= 0 and found[0] < pos):
                m = pattern.search(self._buf, pos)
                found = self._next[i] = _NONE if m is None else m.span()
            if found[0] >= 0 and (best is None or found[0] < best[0]):
                best = found
        return best

    def alternatives_at(self, pos: int) -> list[int]:
        return [i for i, p in enumerate(self._multi.free) if p.match(self._buf, pos) is not None]


class _ReMulti:
    def __init__(self, sources: list[str], free: list[str]) -> None:
        try:
            self.patterns = [re.compile(s.encode("latin-1")) for s in sources]
            self.free = [re.compile(s.encode("latin-1")) for s in free]
        except re.error as exc:
            raise PatternRefused(str(exc)) from None

    def scanner(self, buf: bytes) -> Scanner:
        return _ReScanner(self, buf)


class PythonEngine:
    """The fallback: Python's `re` on the same patterns (where the `google-re2` wheel is missing)."""

    name = "python-re"

    def compile(self, pattern: str) -> Compiled:
        try:
            return _ReCompiled(re.compile(pattern.encode("latin-1")))
        except re.error as exc:
            raise PatternRefused(str(exc)) from None

    def multi(self, sources: list[str], free: list[str]) -> Multi:
        return _ReMulti(sources, free)


def default_engine() -> Engine:
    """RE2 when `google-re2` imports, else the `re` fallback."""
    try:
        return Re2Engine()
    except ImportError:
        return PythonEngine()
