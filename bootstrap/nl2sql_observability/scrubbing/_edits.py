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
    map to) on top of `regions`.

    Regions and edits that overlap (transitively) become one region. Outside regions, current and
    input positions differ by a constant (`delta`), which is what maps a cluster's ends back."""
    out: list[Region] = []
    i = j = 0
    n, m = len(regions), len(edits)
    shift = 0  # new coordinate - current coordinate, after the clusters handled so far
    delta = 0  # input coordinate - current coordinate, after the regions handled so far
    while j < m:
        start, end, _ = edits[j]
        while i < n and regions[i][1] <= start and not regions[i][0] < start < regions[i][1]:
            cs, ce, ins, ine = regions[i]
            out.append((cs + shift, ce + shift, ins, ine))
            delta = ine - ce
            i += 1
        lo, hi, grow, in_lo = start, end, 0, start + delta
        while True:  # absorb every region and edit that overlaps the cluster
            if i < n and regions[i][0] < max(hi, lo + 1) and regions[i][1] > lo:
                lo = min(lo, regions[i][0])
                in_lo = min(in_lo, regions[i][2])
                hi = max(hi, regions[i][1])
                delta = regions[i][3] - regions[i][1]
                i += 1
            elif j < m and (edits[j][0] < hi or edits[j][0] == lo):
                e_start, e_end, new = edits[j]
                hi = max(hi, e_end)
                grow += len(new) - (e_end - e_start)
                j += 1
            else:
                break
        out.append((lo + shift, hi + shift + grow, in_lo, hi + delta))
        shift += grow
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
