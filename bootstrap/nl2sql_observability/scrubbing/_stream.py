"""Scrub a text stream in bounded memory.

Text is cut into batches of about `batch_chars` characters, at a line end when there is one, else at
the last whitespace (secrets never contain whitespace), so a secret is never cut in two. The only
multi-line secret, a PEM private key, keeps the batch open until its END line (at most
`max_pending_chars`). Only a run of more than `batch_chars` characters without any whitespace is
cut hard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from nl2sql_observability.scrubbing._scrubber import Scrubber

_OPEN_PEM = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?![\s\S]*-----END)")


class _Readable(Protocol):
    def readline(self, size: int = -1, /) -> str: ...


def _cut_point(buf: str) -> int:
    cut = buf.rfind("\n") + 1
    if cut:
        return cut
    cut = max(buf.rfind(ws) for ws in " \t\r\f\v") + 1
    return cut or len(buf)


def scrub_stream_lines(
    scrubber: Scrubber,
    pieces: Iterable[str],
    *,
    batch_chars: int = 64 * 1024,
    max_pending_chars: int = 1024 * 1024,
) -> Iterator[str]:
    """Yield the scrubbed text of `pieces` (lines or any fragments of the input, in order)."""
    buf = ""
    for piece in pieces:
        buf = buf + piece if buf else piece
        if len(buf) < batch_chars:
            continue
        cut = _cut_point(buf)
        head = buf[:cut]
        if len(buf) < max_pending_chars and "PRIVATE KEY" in head and _OPEN_PEM.search(head):
            continue  # keep the whole PEM block in one batch
        buf = buf[cut:]
        yield scrubber.scrub(head)
    if buf:
        yield scrubber.scrub(buf)


def scrub_stream(
    scrubber: Scrubber,
    source: _Readable,
    *,
    batch_chars: int = 64 * 1024,
    max_pending_chars: int = 1024 * 1024,
) -> Iterator[str]:
    """Like `scrub_stream_lines`, reading `source.readline(limit)` so no line is held whole in memory."""

    def read() -> Iterator[str]:
        while True:
            line = source.readline(batch_chars)
            if not line:
                return
            yield line

    return scrub_stream_lines(scrubber, read(), batch_chars=batch_chars, max_pending_chars=max_pending_chars)
