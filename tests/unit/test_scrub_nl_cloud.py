"""Passwords given in a sentence and the broader cloud key formats are caught; prose, SQL and ids
that merely mention passwords are kept."""

from __future__ import annotations

import pytest
from nl2sql_observability.scrubbing import Scrubber

S = Scrubber()

CAUGHT = [
    ("password", "fyi my password is hunter2 for now", "hunter2"),
    ("password", "pwd Tr0ub4dor&3 please", "Tr0ub4dor&3"),
    ("password", "the password for the db is S3cr3tPa55", "S3cr3tPa55"),
    ("password", "my password is 'correct horse battery' ok", "correct horse battery"),
    ("password", "The passcode 48213 was sent", "48213"),
    ("password", "new pw -> pa55w0rd", "pa55w0rd"),
    ("password", "passphrase: Blue-Horse-42", "Blue-Horse-42"),
    ("aws_access_key", "id AKIAZ0Z1Z2Z3Z4Z5Z6Z7 ok", "AKIAZ0Z1Z2Z3Z4Z5Z6Z7"),
    ("aws_access_key", "session ASIA1234567890ABCDEF end", "ASIA1234567890ABCDEF"),
    ("aws_access_key", "root A3T01234567890ABCDEF end", "A3T01234567890ABCDEF"),
    ("azure_client_secret", "secret abc8Q~abcdefghijklmnopqrstuvwxyz0123456 x", "abc8Q~abcdefghijklmnop"),
    (
        "azure_sas_signature",
        "GET https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=AbCdEfGhIjKlMnOpQrStUv%2F1234%3D&se=1",
        "AbCdEfGhIjKlMnOpQrStUv",
    ),
    ("digitalocean_token", "DO dop_v1_" + "ab12" * 16 + " end", "dop_v1_ab12ab12"),
    ("alibaba_access_key", "ali LTAI5tAbCdEfGhIjKlMnOp ok", "LTAI5tAbCdEfGhIjKlMnOp"),
    ("secret", "DefaultEndpointsProtocol=https;AccountKey=abcDEF123+/xyz==;EndpointSuffix=x", "abcDEF123"),
]

KEPT = [
    "Password is incorrect",
    "password reset link sent",
    "Password must be at least 8 characters.",
    "password for user alice was changed",
    "PW-1234 is a part number",
    "reset your password at https://example.com/reset",
    "SELECT password_hash, password_changed_at FROM users WHERE id = 42",
    "the passwords are hashed with bcrypt",
    "AKIA is the prefix of AWS access key ids",
    "sig=short&x=1",
]


@pytest.mark.parametrize(
    ("kind", "text", "secret"), CAUGHT, ids=[f"{c[0]}-{i}" for i, c in enumerate(CAUGHT)]
)
def test_caught(kind: str, text: str, secret: str) -> None:
    out = S.scrub(text)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out
    assert S.scrub(out) == out


@pytest.mark.parametrize("text", KEPT)
def test_kept(text: str) -> None:
    assert S.scrub(text) == text
