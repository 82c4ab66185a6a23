"""The scrubber: every category caught, every must-keep example kept, never raises, idempotent."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nl2sql_observability.scrubbing import (
    Scrubber,
    ScrubConfigError,
    load_scrubber,
    scrub_stream,
)

S = Scrubber()

# (kind, text containing exactly one secret, the secret itself)
CAUGHT = [
    (
        "openai_api_key",
        "key: sk-proj-Ab3dEfGhIjKlMnOpQrStUvWxYz0123456789 end",
        "sk-proj-Ab3dEfGhIjKlMnOpQrStUvWxYz0123456789",
    ),
    (
        "openai_api_key",
        "OPENAI sk-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst",
        "sk-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst",
    ),
    (
        "anthropic_api_key",
        "use sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa please",
        "sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa",
    ),
    ("aws_access_key", "id AKIAIOSFODNN7EXAMPLE ok", "AKIAIOSFODNN7EXAMPLE"),
    (
        "secret",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "github_token",
        "token ghp_1234567890abcdefghijABCDEFGHIJ123456 pushed",
        "ghp_1234567890abcdefghijABCDEFGHIJ123456",
    ),
    (
        "github_token",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    ),
    ("gitlab_token", "CI uses glpat-xYz123AbC456dEf789gHi0 today", "glpat-xYz123AbC456dEf789gHi0"),
    (
        "slack_token",
        "bot xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx here",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    (
        "slack_token",
        "hook https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ),
    ("stripe_key", "charge with sk_live_4eC39HqLyjWDarjtT1zdp7dc now", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    (
        "google_api_key",
        "maps AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe ok",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
    ),
    (
        "huggingface_token",
        "HF hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567 ok",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
    ),
    (
        "sendgrid_api_key",
        "mail 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 ok",
        "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",
    ),
    (
        "npm_token",
        "//registry.npmjs.org/:_authToken npm_abcdefghijklmnopqrstuvwxyz0123456789",
        "npm_abcdefghijklmnopqrstuvwxyz0123456789",
    ),
    (
        "jwt",
        "cookie eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c x",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ),
    (
        "bearer_token",
        "Authorization: Bearer 9f8e7d6c5b4a39281726354433221100aabb",
        "9f8e7d6c5b4a39281726354433221100aabb",
    ),
    (
        "private_key",
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq\nabcDEF==\n"
        "-----END RSA PRIVATE KEY-----\nbye",
        "MIIEpAIBAAKCAQEA7bq",
    ),
    (
        "private_key",
        '{"pem": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----\\n"}',
        "MIIEvQIBADANBg",
    ),
    ("password", "DATABASE_URL=postgresql://app:Tr0ub4dor&3@db.internal:5432/nl2sql", "Tr0ub4dor&3"),
    ("password", "redis://:s3cretpass@cache:6379/0", "s3cretpass"),
    ("password", "PGPASSWORD=hunter2 psql", "hunter2"),
    ("password", "login with password: 'correct horse battery staple'", "correct horse battery staple"),
    ("password", '{"user": "bob", "password": "p@ss\\"w0rd"}', 'p@ss\\"w0rd'),
    ("secret", "client_secret=abc123def456&grant_type=client_credentials", "abc123def456"),
    ("secret", "x-api-key: 0123456789abcdef", "0123456789abcdef"),
    ("secret", "{'api_key': 'k-998877'}", "k-998877"),
    ("email", "contact jane.doe+billing@example.co.uk please", "jane.doe+billing@example.co.uk"),
    ("phone", "call +1 415-555-0132 tomorrow", "+1 415-555-0132"),
    ("phone", "office +44 20 7946 0958.", "+44 20 7946 0958"),
    ("phone", "mobile (415) 555-0132 or", "(415) 555-0132"),
    ("phone", "us 415-555-0132 ok", "415-555-0132"),
    ("payment_card", "visa 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111"),
    ("payment_card", "mc 5555555555554444 ok", "5555555555554444"),
    ("payment_card", "amex 3782-822463-10005 ok", "3782-822463-10005"),
    ("payment_card", "ref 0132 4111 1111 1111 1111 end", "4111 1111 1111 1111"),
    ("payment_card", "order 12345678901234 card 4111111111111111", "4111111111111111"),
    ("us_ssn", "SSN 123-45-6789 on file", "123-45-6789"),
    ("iban", "pay to DE89 3704 0044 0532 0130 00 today", "DE89 3704 0044 0532 0130 00"),
    ("iban", "GB82WEST12345698765432", "GB82WEST12345698765432"),
    ("ip", "client 203.0.113.54 connected", "203.0.113.54"),
    ("ip", "from 2001:db8:85a3::8a2e:370:7334 via", "2001:db8:85a3::8a2e:370:7334"),
    ("ip", "ip 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
]


@pytest.mark.parametrize(
    ("kind", "text", "secret"), CAUGHT, ids=[f"{c[0]}-{i}" for i, c in enumerate(CAUGHT)]
)
def test_each_category_is_caught(kind: str, text: str, secret: str) -> None:
    out = S.scrub(text)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out
    assert S.scrub(out) == out


def test_replacement_keeps_the_surroundings() -> None:
    assert (
        S.scrub("DSN postgresql://app:pw123@db:5432/x")
        == "DSN postgresql://app:[REDACTED:password]@db:5432/x"
    )
    assert (
        S.scrub("Authorization: Bearer abcdefghijklmnop1234")
        == "Authorization: Bearer [REDACTED:bearer_token]"
    )
    assert S.scrub('{"password": "x1", "user": "u"}') == '{"password": "[REDACTED:password]", "user": "u"}'
    assert S.scrub("write to a@b.io.") == "write to [REDACTED:email]."


KEPT = [
    "SELECT u.id, u.password_hash, k.api_key_id FROM users u JOIN api_keys k ON k.user_id = u.id",
    "SELECT * FROM auth_tokens WHERE expires_at > '2026-11-23' AND revoked = false",
    "INSERT INTO secret_santa (giver, receiver) VALUES (1, 2)",
    "UPDATE accounts SET balance = balance - 1234.56 WHERE id = 42 AND tenant_id = 'acme'",
    "password_hash = 'bcrypt', api_key_id = 7, auth_tokens: 3, secret_santa: true",
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "request 123e4567-e89b-12d3-a456-426614174000 and 550e8400-e29b-41d4-a716-446655440000",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5 d41d8cd98f00b204e9800998ecf8427e sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "commit 9e2b5fe0a1b2c3d4e5f60718293a4b5c6d7e8f90 (short 84d516d) on main",
    "versions 1.45.1 0.66b1 v3.14.0 2.20.0 6.0.12.20261113 grafana 13.2.0 python 3.11.7",
    "listening on 127.0.0.1:4317 and 0.0.0.0:4318, ports 16686 9090 3000",
    "amounts $1,234.56 EUR 99.90 1 234 567,89 total 1000000",
    "dates 2026-11-23 23/11/2026 2026-11-23T23:50:54.123Z 11/23/26 at 23:50:54",
    "epoch 1732406400 ms 1732406400123 ns 1732406400123456789",
    "order 4111111111111112 is not a card (Luhn fails); invoice 1234-5678-9012",
    "max_tokens=512 temperature=0.2 top_p=0.9 input_tokens: 120 token_count=5",
    "the secret to good SQL is indexes; a token of appreciation; password reset link sent",
    "see https://example.com/docs?page=2#top and http://localhost:16686/trace/abc",
    "model gpt-4o-mini-2024-07-18 and claude-3-5-sonnet-20241022",
    "file /var/lib/app/events.log.3 line 42 col 7",
    "IBAN-like DE00 1234 5678 9012 3456 78 fails its checksum",
    "phone-ish 12345 and 2026 and 555-0100 and 10.5.3",
    "SELECT 1; -- a comment with key words: password, secret, token, api key",
    "std::vector<int> and ab::cd and a::b::c",
    "mac 00:1A:2B:3C:4D:5E",
    "[REDACTED:email] already scrubbed [REDACTED:password]",
]


@pytest.mark.parametrize("text", KEPT)
def test_must_keep_examples_are_untouched(text: str) -> None:
    assert S.scrub(text) == text


def test_ip_scrubbing_can_be_turned_off() -> None:
    text = "client 203.0.113.54 and 2001:db8::8a2e:370:7334"
    assert "[REDACTED:ip]" in Scrubber().scrub(text)
    assert Scrubber(scrub_ip=False).scrub(text) == text


def test_extra_patterns_and_allow_list() -> None:
    scrubber = Scrubber(
        extra_patterns={"acme_customer": r"ACME-\d{6}", "ticket": r"ticket #(?P<secret>\d+)"},
        allow=[r"support@example\.com"],
    )
    out = scrubber.scrub("ACME-123456 wrote to support@example.com and bob@example.com about ticket #9912")
    assert out == (
        "[REDACTED:acme_customer] wrote to support@example.com and [REDACTED:email]"
        " about ticket #[REDACTED:ticket]"
    )
    assert scrubber.scrub(out) == out
    assert Scrubber(extra_patterns=[r"ACME-\d+"]).scrub("x ACME-1 y") == "x [REDACTED:custom] y"


def test_an_extra_pattern_never_eats_a_marker() -> None:
    scrubber = Scrubber(extra_patterns={"word": r"REDACTED|[a-z]+"})
    out = scrubber.scrub("mail jane@example.com")
    assert out == "[REDACTED:word] [REDACTED:email]"
    assert scrubber.scrub(out) == out


def test_bad_extra_pattern_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVABILITY_SCRUB_EXTRA_PATTERNS", '["ACME-(\\\\d+"]')
    with pytest.raises(
        ScrubConfigError, match=r"OBSERVABILITY_SCRUB_EXTRA_PATTERNS.*not a valid regular expression"
    ):
        load_scrubber()
    monkeypatch.setenv("OBSERVABILITY_SCRUB_EXTRA_PATTERNS", "not json")
    with pytest.raises(ScrubConfigError, match=r"OBSERVABILITY_SCRUB_EXTRA_PATTERNS='not json' is not valid"):
        load_scrubber()
    monkeypatch.setenv("OBSERVABILITY_SCRUB_EXTRA_PATTERNS", '{"Bad Kind": "x"}')
    with pytest.raises(ScrubConfigError, match="kind 'Bad Kind'"):
        load_scrubber()
    monkeypatch.delenv("OBSERVABILITY_SCRUB_EXTRA_PATTERNS")
    monkeypatch.setenv("OBSERVABILITY_SCRUB_ALLOW", '["[unclosed"]')
    with pytest.raises(ScrubConfigError, match="OBSERVABILITY_SCRUB_ALLOW"):
        load_scrubber()
    monkeypatch.setenv("OBSERVABILITY_SCRUB_ALLOW", '["test@example\\\\.com"]')
    monkeypatch.setenv("OBSERVABILITY_SCRUB_IP", "false")
    scrubber = load_scrubber()
    assert scrubber.scrub("test@example.com 203.0.113.5") == "test@example.com 203.0.113.5"


def test_huge_and_hostile_inputs() -> None:
    big = ("lorem ipsum 4111 1111 1111 1111 " * 40000) + "x" * 200_000
    out = S.scrub(big)
    assert "4111 1111" not in out
    assert S.scrub("-----BEGIN PRIVATE KEY-----" * 2000).count("PRIVATE") == 0
    assert S.scrub("a" * 10_000 + "@" + "b" * 10_000) is not None
    assert S.scrub("\x00\x01\ud800\udfff\U0010ffff") == "\x00\x01\ud800\udfff\U0010ffff"
    assert S.scrub("") == ""


def test_stream_catches_secrets_across_chunk_boundaries() -> None:
    block = "".join(
        [
            "key sk-proj-Ab3dEfGhIjKlMnOpQrStUvWxYz0123456789\n",
            "-----BEGIN EC PRIVATE KEY-----\n",
            *["MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oBVn7KhhbB8PoAoGCCqGSM49\n"] * 20,
            "-----END EC PRIVATE KEY-----\n",
        ]
    )
    filler = "plain text line without anything\n"
    text = "".join(filler * (i % 7) + block for i in range(30))
    # a long line with no newline, cut at whitespace
    text += ("word " * 5000) + "mail jane@example.com " + ("word " * 5000)
    out = "".join(scrub_stream(S, io.StringIO(text), window_chars=1000))
    assert "sk-proj-" not in out
    assert "MHcCAQEEIBkg4LVWM9" not in out
    assert "jane@example.com" not in out
    assert out.count("[REDACTED:private_key]") == 30
    assert out.count(filler) == text.count(filler)


def test_scrub_never_raises_on_a_broken_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    scrubber = Scrubber()

    def boom(text: str) -> str:
        raise RuntimeError("rule bug")

    monkeypatch.setattr(scrubber, "_one_pass", boom)
    assert scrubber.scrub("x" * 300) == "[REDACTED:scrub_error]"  # fails closed


SECRETS = st.sampled_from([c[2] for c in CAUGHT] + ["jane@example.com", "4111 1111 1111 1111", "10.1.2.3"])
TEXT = st.text(max_size=300)
MIXED = st.lists(
    st.one_of(TEXT, SECRETS, st.sampled_from(KEPT), st.sampled_from([" ", "=", ":", "\n", "@", "-"])),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MIXED)
def test_never_raises_and_is_idempotent(text: str) -> None:
    once = S.scrub(text)
    assert isinstance(once, str)
    assert S.scrub(once) == once


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_binaryish_text_never_raises(text: str) -> None:
    once = S.scrub(text)
    assert S.scrub(once) == once
