"""Where a scrubbed text differs from its input: the edits of the one pass, and the regions they
make, in input and output coordinates. The stream scrubber and the cut of log and span text use
the regions to cut only where nothing was replaced (hand-written: no library tracks `re.sub` offsets).
"""

from __future__ import annotations

from collections.abc import Sequence

# One replaced (or kept whole) region: (out_start, out_end, in_start, in_end); sorted, disjoint.
Region = tuple[int, int, int, int]
# One replacement: (start, end, new text), in input coordinates.
Edit = tuple[int, int, str]


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    parts: list[str] = []
    last = 0
    for start, end, new in edits:
        parts.append(text[last:start])
        parts.append(new)
        last = end
    parts.append(text[last:])
    return "".join(parts)
