"""Parsing and printing untrusted text in bounded time and stack: JSON with a nesting limit, URLs
without their userinfo, control characters made visible.

Why by hand: `json.loads` recurses once per nesting level and raises `RecursionError` (not
`ValueError`) on deep input, and no stdlib or well-kept library offers a depth limit; one linear scan
of the brackets outside strings decides it before the parser runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MAX_JSON_DEPTH",
    "JsonTooDeepError",
    "deep_json_problem",
    "json_depth_exceeds",
    "loads_bounded",
    "redact_url",
    "redact_urls_in",
    "visible_controls",
]

# Settings, price files and audit events nest 3 levels at most; 64 leaves room and stays far from
# the interpreter's recursion limit.
MAX_JSON_DEPTH = 64

_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


class JsonTooDeepError(ValueError):
    """JSON nested deeper than the limit (a `ValueError`, like every other malformed JSON)."""


def json_depth_exceeds(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if the brackets of `text` (outside JSON strings) nest deeper than `limit`. Linear time."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "replace")
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def loads_bounded(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, refusing input nested deeper than `limit` with `JsonTooDeepError`."""
    if json_depth_exceeds(text, limit):
        raise JsonTooDeepError(f"JSON nested deeper than {limit} levels")
    return json.loads(text)


def deep_json_problem(prefix: str, environ: Mapping[str, str], limit: int = MAX_JSON_DEPTH) -> str | None:
    """One line naming the variables starting with `prefix` whose value nests JSON deeper than `limit`
    (pydantic-settings decodes complex settings with `json.loads`, which raises `RecursionError`)."""
    upper = prefix.upper()
    names = sorted(
        name
        for name, value in environ.items()
        if name.upper().startswith(upper) and json_depth_exceeds(value, limit)
    )
    if not names:
        return None
    return (
        f"{', '.join(names)}: JSON nested deeper than {limit} levels is not allowed;"
        " allowed values: a flat JSON list or object"
    )


def redact_url(value: str) -> str:
    """`value` with the user and password of a URL replaced by `***` (the rest unchanged); text that is
    not a URL with userinfo comes back as it was."""
    if "@" not in value:
        return value
    if "://" not in value:  # the gRPC `user:password@host:port` form
        return "***@" + value.rsplit("@", 1)[1]
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is not None and parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"***@{host}"))
    return redact_urls_in(value)


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}://)[^/?#@\s]{0,4096}@")


def redact_urls_in(text: str) -> str:
    """Every `scheme://user:password@` in free text becomes `scheme://***@`."""
    return _USERINFO.sub(r"\1***@", text)


_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible_controls(text: str, *, keep_newlines: bool = True) -> str:
    """Control characters (C0 but tab and newline, DEL, C1, bidi overrides) as `\\xNN` / `\\uNNNN`, so
    text printed on a terminal cannot move the cursor, clear the screen or retitle the window."""
    pattern = _CONTROLS if keep_newlines else re.compile(_CONTROLS.pattern[:-1] + r"\n\t]")
    return pattern.sub(lambda m: _escape(m.group()), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
