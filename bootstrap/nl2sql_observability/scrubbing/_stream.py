"""Scrub a text stream in bounded memory, with the same result as scrubbing it whole.

The stream is read into a window of `window_chars + overlap_chars` characters, which is scrubbed
whole. Only the part up to a cut at or before `window_chars` is written: a cut at a line end when
there is one in the second half of the window, else after a character that no rule looks behind
(whitespace or punctuation such as `"`, `,`, `}`), and never inside a replaced region. The overlap
(more than the reach of any built-in rule: a PEM body is at most 16 KB, a quoted value 4 KB) lets
every rule see past the cut, so a secret lying across it is replaced as a whole, and the rest of
the window is scrubbed again with the next one. Only a run of more than `max_pending_chars` without
any such character is cut hard.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from nl2sql_observability.scrubbing._edits import Region

if TYPE_CHECKING:
    from nl2sql_observability.scrubbing._scrubber import Scrubber

# Characters after which a cut changes no rule's look-behind (`\b`, `(?<![\w.:/-]...)`, ...).
_NEUTRAL = frozenset(" \t\n\r\f\v\"',;{}[]()<>=|!?*&^~`#$")
WINDOW_CHARS = 128 * 1024
OVERLAP_CHARS = 20 * 1024
MAX_PENDING_CHARS = 1024 * 1024


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> str: ...


def _out_position(regions: Sequence[Region], region_ends: Sequence[int], cut: int) -> int | None:
    """Output position of input position `cut`; None when `cut` is inside a replaced region."""
    i = bisect_right(region_ends, cut)  # regions[:i] end at or before the cut
    if i < len(regions) and regions[i][2] < cut:
        return None
    if i == 0:
        return cut
    _, out_end, _, in_end = regions[i - 1]
    return cut - in_end + out_end


def _cut(buf: str, limit: int, regions: Sequence[Region]) -> tuple[int, int] | None:
    """(input cut, output cut) at or before `limit`, best first; None when there is none."""
    ends = [r[3] for r in regions]
    half = limit // 2
    pos = limit
    while pos > half:
        i = buf.rfind("\n", half, pos)
        if i < 0:
            break
        out = _out_position(regions, ends, i + 1)
        if out is not None:
            return i + 1, out
        pos = i
    for low, high in ((half, limit), (0, half)):
        for i in range(high - 1, low - 1, -1):
            if buf[i] in _NEUTRAL:
                out = _out_position(regions, ends, i + 1)
                if out is not None and i + 1 > 0:
                    return i + 1, out
    return None


def scrub_stream(
    scrubber: Scrubber,
    source: _Readable,
    *,
    window_chars: int = WINDOW_CHARS,
    overlap_chars: int = OVERLAP_CHARS,
    max_pending_chars: int = MAX_PENDING_CHARS,
) -> Iterator[str]:
    """Yield the scrubbed text of `source` (anything with `read(n)`), in pieces, in bounded memory.

    The concatenation equals `scrubber.scrub(source.read())` unless a run of more than
    `max_pending_chars` has no whitespace or punctuation, or a user pattern reaches further than
    `overlap_chars`."""
    buf = ""
    eof = False
    window = window_chars
    while True:
        while not eof and len(buf) < window + overlap_chars:
            piece = source.read(window + overlap_chars - len(buf))
            if piece:
                buf += piece
            else:
                eof = True
        if eof:
            if buf:
                yield scrubber.scrub(buf)
            return
        out, regions = scrubber.scrub_regions(buf)
        found = _cut(buf, len(buf) - overlap_chars, regions)
        if found is None and window < max_pending_chars:
            window = min(2 * window, max_pending_chars)  # read on: a long token or a long secret
            continue
        if found is None:  # no safe cut within max_pending_chars: cut hard, after a replaced region
            limit = len(buf) - overlap_chars
            ends = [r[3] for r in regions]
            i = bisect_right(ends, limit)
            if i < len(regions) and regions[i][2] < limit:
                found = (regions[i][3], regions[i][1])
            else:
                found = (limit, limit if i == 0 else limit - regions[i - 1][3] + regions[i - 1][1])
        cut, out_cut = found
        yield out[:out_cut]
        buf = buf[cut:]
        window = window_chars
