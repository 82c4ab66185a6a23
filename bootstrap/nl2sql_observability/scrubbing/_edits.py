"""Where a scrubbed text differs from its input: the replaced regions, in input coordinates.

`compose` folds one pass's edits into the regions found so far, so that after any number of passes
we still know which input ranges became which output ranges. The stream scrubber uses this to cut
its window only where nothing was replaced (hand-written: no library tracks `re.sub` offsets).
"""

from __future__ import annotations

from collections.abc import Sequence

# One replaced region: (out_start, out_end, in_start, in_end); sorted, disjoint.
Region = tuple[int, int, int, int]
# One replacement made by a pass: (start, end, new text), in that pass's input coordinates.
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


def compose(regions: Sequence[Region], edits: Sequence[Edit]) -> list[Region]:
    """Regions after applying `edits` (sorted, disjoint, in the coordinates of the text `regions`
    map to) on top of `regions`."""
    out: list[Region] = []
    i = 0
    n = len(regions)
    shift = 0  # new coordinate - current coordinate, after the edits handled so far
    delta = 0  # input coordinate - current coordinate, after the regions passed so far
    for start, end, new in edits:
        while i < n and regions[i][1] <= start:
            cs, ce, ins, ine = regions[i]
            out.append((cs + shift, ce + shift, ins, ine))
            delta = ine - ce
            i += 1
        in_start = start + delta
        in_end = end + delta
        while i < n and regions[i][0] < end:
            cs, ce, ins, ine = regions[i]
            in_start = min(in_start, ins)
            delta = ine - ce
            in_end = max(end + delta, ine)
            i += 1
        out.append((start + shift, start + shift + len(new), in_start, in_end))
        shift += len(new) - (end - start)
    for cs, ce, ins, ine in regions[i:]:
        out.append((cs + shift, ce + shift, ins, ine))
    return out


def out_position(regions: Sequence[Region], cut: int) -> int | None:
    """The output position of input position `cut`, or None if `cut` lies inside a replaced region."""
    delta = 0
    for _, ce, ins, ine in regions:
        if ine <= cut:
            delta = ce - ine
            continue
        if ins < cut:
            return None
        break
    return cut + delta
