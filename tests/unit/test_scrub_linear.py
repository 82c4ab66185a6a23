"""The scrubber scans once, in linear time, on RE2 and on the `re` fallback: operations are counted
on generated worst cases (never timed), hundreds of user patterns fit, and both engines give the
same results on the corpora."""

from __future__ import annotations

import subprocess
import sys

import pytest
import test_scrub_nl_cloud
import test_scrub_rules
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nl2sql_observability.scrubbing import Scrubber, ScrubConfigError
from nl2sql_observability.scrubbing._engine import PythonEngine, Re2Engine, ScanStats, default_engine
from nl2sql_observability.scrubbing._samples import POSITIVE_SAMPLES

ENGINES = {"re2": Re2Engine(), "python-re": PythonEngine()}
SCRUBBERS = {name: Scrubber(engine=engine) for name, engine in ENGINES.items()}

# Units repeated back to back, with no separator: every rule's matches glued together, nested quotes,
# long runs without separators, and prefixes that start a candidate and never finish one.
WORST_UNITS = [
    *POSITIVE_SAMPLES,
    "sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa",
    "-----BEGIN PRIVATE KEY-----!",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
    "postgresql://app:pw@",
    "postgresql%3A%2F%2Fapp%3Apw%40",
    "password%3Dx",
    "jdbc:oracle:thin:scott/tiger@",
    "PWD={a;b}}",
    "IDENTIFIED BY 'x'",
    "INSERT INTO t (password) VALUES ('x'),",
    "-u a:b ",
    "Authorization: Bearer ",
    "Authorization: SSWS x",
    "Cookie: a=b;",
    "Basic dXNlcjpwdw== ",
    "Token ab12cd34ef ",
    'password="',
    "password='\"",
    '"password": "\'',
    "password: ",
    "my password is ",
    "phone ",
    "tel: +1 ",
    "a@",
    "a@b.",
    "x.",
    "1",
    "1.",
    "1:",
    "1-",
    "12-",
    "a1",
    "aB3",
    "::",
    "f:",
    "+1",
    "(415)",
    "GB82",
    "eyJ",
    "eyJhbGciOi.",
    "sk-",
    "AKIA",
    "ghp_",
    "\"'",
    "é",
    "[REDACTED:email]",
    "[REDACTED:",
]
SIZE = 4096


def _ops(stats: ScanStats) -> int:
    return stats.searches + stats.anchored + stats.confirms


@pytest.mark.parametrize("engine", list(SCRUBBERS))
@pytest.mark.parametrize("unit", WORST_UNITS)
def test_one_pass_and_operations_linear_in_the_length(engine: str, unit: str) -> None:
    scrubber = SCRUBBERS[engine]
    small = unit * (SIZE // len(unit) + 1)
    large = small * 8
    at_n, at_8n = scrubber.scan_stats(small), scrubber.scan_stats(large)
    assert at_n.passes == at_8n.passes == 1
    for text, stats in ((small, at_n), (large, at_8n)):
        # a bounded number of operations per character; a scan resumed after a rejected candidate
        # covers again at most that candidate (bounded: the longest candidate pattern, 100 bytes)
        assert _ops(stats) <= 4 * len(text)
        assert stats.scanned <= 100 * len(text)
    # and the cost per character does not grow with the length
    assert _ops(at_8n) / len(large) <= 1.5 * _ops(at_n) / len(small) + 0.01
    assert at_8n.scanned / len(large) <= 1.5 * at_n.scanned / len(small) + 0.01
    out = scrubber.scrub(large)
    assert scrubber.scrub(out) == out


def test_a_clean_text_is_one_scan() -> None:
    text = "SELECT id, password_hash FROM users WHERE created_at > '2026-01-01' -- version 1.45.1\n" * 500
    stats = SCRUBBERS["re2"].scan_stats(text)
    assert (stats.passes, stats.searches, stats.confirms) == (1, 1, 0)
    assert stats.scanned == len(text)


def test_back_to_back_phone_numbers_are_not_quadratic() -> None:
    """The issue's case: 32 KB of glued phone numbers took 21 s with one marker added per pass."""
    text = "(415) 555-0132" * (32 * 1024 // 14)
    stats = SCRUBBERS["re2"].scan_stats(text)
    assert stats.passes == 1
    assert _ops(stats) <= 4 * text.count("(")
    assert SCRUBBERS["re2"].scrub(text) == "[REDACTED:phone]" * text.count("(")


def test_hundreds_of_user_patterns_fit_in_one_scan() -> None:
    patterns = {f"acme_{i:03d}": f"ACME{i:03d}-[0-9]{{6}}" for i in range(400)}
    scrubber = Scrubber(extra_patterns=patterns)
    text = "tickets ACME000-123456 and ACME399-654321, not ACME400-111111\n" * 2000
    out = scrubber.scrub(text)
    assert out.count("[REDACTED:acme_000]") == out.count("[REDACTED:acme_399]") == 2000
    assert "ACME400-111111" in out
    clean = "SELECT name FROM customers WHERE total > 100\n" * 2000
    assert scrubber.scan_stats(clean).searches == 1


def test_re2_is_the_default_engine() -> None:
    assert default_engine().name == "re2"  # google-re2 is a dependency; the fallback is for missing wheels


CORPUS_CAUGHT = test_scrub_rules.CAUGHT + test_scrub_nl_cloud.CAUGHT
CORPUS_KEPT = test_scrub_rules.KEPT + test_scrub_nl_cloud.KEPT


@pytest.mark.parametrize(("kind", "text", "secret"), CORPUS_CAUGHT)
def test_the_fallback_catches_the_corpus(kind: str, text: str, secret: str) -> None:
    out = SCRUBBERS["python-re"].scrub(text)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out
    assert out == SCRUBBERS["re2"].scrub(text)


@pytest.mark.parametrize("text", CORPUS_KEPT)
def test_the_fallback_keeps_the_corpus(text: str) -> None:
    assert SCRUBBERS["python-re"].scrub(text) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(test_scrub_rules.MIXED)
def test_both_engines_agree_and_are_idempotent(text: str) -> None:
    outs = {name: scrubber.scrub(text) for name, scrubber in SCRUBBERS.items()}
    assert outs["re2"] == outs["python-re"]
    for name, scrubber in SCRUBBERS.items():
        assert scrubber.scrub(outs[name]) == outs[name]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([*POSITIVE_SAMPLES, " ", "=", ":", "x", "1", "-", "@", "'", '"']), max_size=10
    ).map("".join)
)
def test_glued_samples_are_idempotent_on_both_engines(text: str) -> None:
    for scrubber in SCRUBBERS.values():
        once = scrubber.scrub(text)
        assert scrubber.scrub(once) == once


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(\w+)\1", r"(?<=id=)\d+", r"(x|xx)+y"])
def test_the_fallback_refuses_what_re_may_run_in_more_than_linear_time(pattern: str) -> None:
    with pytest.raises(ScrubConfigError, match=r"acme=.*cannot run in linear time"):
        Scrubber(extra_patterns={"acme": pattern}, engine=PythonEngine())


def test_the_fallback_accepts_plain_patterns() -> None:
    scrubber = Scrubber(extra_patterns={"acme": r"ACME-\d{6}"}, engine=PythonEngine())
    assert scrubber.scrub("ticket ACME-123456") == "ticket [REDACTED:acme]"


@pytest.mark.parametrize(
    "text",
    [
        "npm_000000000000000000000000000000000000https://hooks.slack.com/services/0000000000000000BT//",
        "Cookie: UPDATE accounts SET balance = balance - 1234.56 WHERE id = 42 AND tenant_id = 'acme'",
        "q7z2.lw9x@mail-c4vb8.test-----BEGIN PRIVATE KEY-----!",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----219-09-9999"
        "-----BEGIN PRIVATE KEY-----!",
        "Set-Cookie: sid=abc; Path=/; HttpOnly",
    ],
)
def test_found_by_fuzzing_one_pass_is_a_fixed_point(text: str) -> None:
    for scrubber in SCRUBBERS.values():
        once = scrubber.scrub(text)
        assert scrubber.scrub(once) == once


EXIT_RACE = """
import threading
from nl2sql_observability.scrubbing import Scrubber

scrubber = Scrubber()
text = "mail jane@example.com about 4111 1111 1111 1111 " * 20000
started = threading.Event()


def loop():
    while True:
        scrubber.scrub_regions(text)
        started.set()


threading.Thread(target=loop, daemon=True).start()
started.wait(60)
"""


def test_a_daemon_thread_scrubbing_while_the_process_exits_does_not_abort_it() -> None:
    """RE2 releases the GIL; a daemon thread returning into a finalizing interpreter from C++ is
    ended there and aborts the process (an exporter's worker at exit). At exit the scrubber waits
    for scans under way, then runs on `re`."""
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", EXIT_RACE], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "terminate called" not in proc.stderr
