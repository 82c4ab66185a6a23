"""The streaming scrubber (`scrub_stream`, `nl2sql-obs scrub`) writes exactly what the in-memory
scrubber writes, whatever the input and wherever its windows are cut."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nl2sql_observability.scrubbing import Scrubber, scrub_stream
from nl2sql_observability.scrubbing._stream import OVERLAP_CHARS, WINDOW_CHARS

S = Scrubber()
API_KEY = "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0"
PASSWORD = "correct horse battery staple"
# Secrets with inner spaces or punctuation, i.e. that a cut at whitespace would split.
SECRETS = [
    API_KEY,
    f'"password": "{PASSWORD}"',
    "(415) 555-0132",
    "GB82 WEST 1234 5698 7654 32",
    "4111 1111 1111 1111",
    "jane.doe@example.com",
    "Authorization: Bearer abcdefghijklmnop0123456789",
    "postgresql://app:s3cr3t-pw@db.internal:5432/shop",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n"
    "-----END PRIVATE KEY-----",
]
# What must not survive of each secret.
CORES = [
    API_KEY,
    PASSWORD,
    "555-0132",
    "5698 7654",
    "4111 1111",
    "jane.doe",
    "abcdefghijklmnop0123",
    "s3cr3t-pw",
]
CORES += ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"]


def _stream(text: str, **kwargs: int) -> str:
    return "".join(scrub_stream(S, io.StringIO(text, newline=""), **kwargs))


def test_a_minified_json_line_with_a_secret_across_the_old_64k_cut_is_scrubbed() -> None:
    # One JSON document on one line, longer than 64 KB; secrets lie across offset 65536.
    for secret, core in ((API_KEY, API_KEY), (f'"password": "{PASSWORD}"', PASSWORD)):
        head = json.dumps({"rows": ["x" * 10] * 3000}, separators=(",", ":"))[:-1]
        pad = 65536 - len(head) - 3 - len(secret) // 2
        text = head + "," + "y" * pad + "," + secret + ',"z":1}' + '{"q":"' + "w" * 70000 + '"}'
        assert text.index(secret) < 65536 < text.index(secret) + len(secret)
        out = _stream(text)
        assert core not in out
        assert out == S.scrub(text)


def test_small_windows_give_the_in_memory_result() -> None:
    filler = "SELECT id, password_hash FROM users WHERE tenant = 'acme' AND id = 42;\n"
    parts = []
    for i in range(120):
        parts.append(filler * (i % 5))
        parts.append("x" * (i * 37 % 300) + " \n,"[i % 3])
        parts.append(SECRETS[i % len(SECRETS)])
        parts.append(" " if i % 3 else "\n")
    text = "".join(parts)
    for window in (1000, 4096, 5000):
        out = _stream(text, window_chars=window)
        assert out == S.scrub(text)
        for core in CORES:
            assert core not in out
        assert out.count(filler) == text.count(filler)


@pytest.mark.parametrize("secret_index", range(len(SECRETS)))
def test_a_secret_at_every_offset_across_the_window_limit(secret_index: int) -> None:
    secret = SECRETS[secret_index]
    window, overlap = 2048, 1024  # the overlap covers these short secrets' reach
    for j in range(len(secret) + 2):
        head = ('{"k":"v",' * 400)[: window - 1 - j]  # no line end: the cut must fall inside the line
        text = head + " " + secret + ", " + '{"k":"v",' * 300
        out = _stream(text, window_chars=window, overlap_chars=overlap)
        assert out == S.scrub(text), (secret, j)
        assert CORES[secret_index] not in out, (secret, j)


def test_a_huge_run_without_any_cut_point_is_still_streamed() -> None:
    text = "a" * 300_000 + " key " + API_KEY + "\n" + "b" * 10
    out = _stream(text, window_chars=4096, max_pending_chars=65536)
    assert API_KEY not in out
    assert len(out) == len(S.scrub(text))


_FILLER = st.sampled_from(
    [
        "SELECT name FROM customers WHERE id = 7;\n",
        '{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","n":12},',
        "plain words and numbers 1.45.1 2026-11-24 ",
        "x" * 97,
        "\n",
        ", ",
    ]
)


@st.composite
def _documents(draw: st.DrawFn) -> tuple[str, list[int]]:
    size = draw(st.integers(min_value=100_000, max_value=2_000_000))
    unit = "".join(draw(st.lists(_FILLER, min_size=5, max_size=40)))
    one_line = draw(st.booleans())  # like minified JSON: cuts must fall inside the line
    if one_line:
        unit = unit.replace("\n", " ")
    body = (unit * (size // len(unit) + 1))[:size]
    # A secret lying across every place a window may be cut (its limit, at every offset inside the
    # secret), and one every few KB in between (a window starts wherever the previous one was cut).
    gap = draw(st.integers(1500, 9000))
    parts: list[str] = []
    placed: list[int] = []
    length = taken = 0  # characters written so far / taken from the filler
    boundary = WINDOW_CHARS
    while taken < size:
        index = draw(st.integers(0, len(SECRETS) - (2 if one_line else 1)))  # the PEM key has lines
        secret = SECRETS[index]
        at = length + gap  # output position of the next secret
        if at + len(secret) + 1 >= boundary:
            at = max(length, boundary - 1 - draw(st.integers(0, len(secret))))
            boundary += WINDOW_CHARS
        chunk = body[taken : taken + at - length]
        taken += len(chunk)
        # Separated from the filler as real text would be: a value glued to digits is another value.
        piece = chunk + " " + secret + draw(st.sampled_from([", ", "; "] if one_line else [", ", "\n", "; "]))
        parts.append(piece)
        length += len(piece)
        placed.append(index)
    return "".join(parts), placed


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(_documents())
def test_property_stream_equals_in_memory(doc: tuple[str, list[int]]) -> None:
    text, placed = doc
    out = _stream(text)
    assert out == S.scrub(text)
    for i in set(placed):
        assert CORES[i] not in out


def test_window_and_overlap_leave_room_for_the_longest_rule() -> None:
    assert OVERLAP_CHARS > 16384 + 200  # a PEM body is searched up to 16 KB after its BEGIN line


def _scrub_cli(stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    code = "import sys; from nl2sql_observability.cli import main; sys.exit(main())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSERVABILITY_SCRUB_")}
    return subprocess.run(
        [sys.executable, "-c", code, "scrub", *args],
        input=stdin,
        capture_output=True,
        check=False,
        env=env,
        timeout=300,
    )


def test_cli_on_a_long_line_equals_in_memory() -> None:
    text = '{"a":"' + "v" * 65500 + '","password": "' + PASSWORD + '","b":"' + "w" * 100000 + '"}\n'
    proc = _scrub_cli(text.encode())
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD.encode() not in proc.stdout
    assert proc.stdout.decode() == S.scrub(text)
