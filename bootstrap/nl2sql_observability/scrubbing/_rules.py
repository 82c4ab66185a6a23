"""The built-in detection rules: for each kind, a candidate pattern for the one linear-time scan, the
precise pattern checked at a candidate's start, and a validator.

Design (after pydantic logfire's scrubber, but value-oriented rather than key-oriented):

* `candidate` is RE2 syntax without look-arounds or capture groups, matching (at least) wherever
  the precise rule can start; all candidates are one alternation that RE2 scans once (`_scan`).
* `pattern` is the precise rule (Python `re`, ASCII mode), run anchored at a candidate's start with
  a bounded reach; `lead_free` is the same without its leading context check, used right after a
  replaced region (where the text will read `]`), so scrubbing the output again finds the same.
* Replacement text is `[REDACTED:kind]`; no rule starts inside or consumes such a marker.
* Rules that are checksummed in the real world (payment cards: Luhn, IBAN: mod 97) are validated, so
  order numbers, timestamps and ids that merely look like them are kept; phone numbers need an
  international prefix with a country code and length from libphonenumber's data, a phone context
  word, or a valid national format.
* Names are never redacted, only values: `password_hash`, `api_key_id`, `auth_tokens`, `secret_santa`
  are not keys of the key=value rule because the key must END at a sensitive word.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nl2sql_observability.scrubbing._phone_data import NSN_LENGTHS

MARKER_PREFIX = "[REDACTED:"
MARKER_RE = re.compile(r"\[REDACTED:[a-z0-9_]+\]")
MARKER_CANDIDATE = r"\[REDACTED:[a-z0-9_]+\]"
KIND_RE = re.compile(r"^[a-z0-9_]{1,40}$")


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


Allowed = Callable[[str], bool]
Replacer = Callable[[re.Match[str], Allowed], str]
# One replacement: (start, end, new text) in the coordinates of the scanned text.
Edit = tuple[int, int, str]
# A hand-written check at a candidate's start: (text, start, allowed, per-scan state) -> edit or None.
Confirm = Callable[[str, int, Allowed, dict[str, Any]], "Edit | None"]


@dataclass(frozen=True)
class Rule:
    kind: str
    candidate: str
    pattern: re.Pattern[str] | None = None
    replacer: Replacer | None = None
    lead_free: re.Pattern[str] | None = None
    confirm: Confirm | None = None
    # When the candidate is an anchor inside the match (`@` of an e-mail): searched with the anchor as
    # its end, it finds where the match starts. Keeps the scan's DFA small: a candidate that could
    # start at any letter of any word multiplies its states.
    back: re.Pattern[str] | None = None
    # The candidate that starts where the match starts, for when users' patterns share the scan
    # (they take effect after the built-in rules, which needs every built-in start in the scan).
    full_candidate: str | None = None
    # Characters that must not precede a match (its look-behind as a class): the scan's candidate
    # then consumes the character before it, so a flood of near misses (`1:1:1:…`, digit runs)
    # yields one candidate, not one per character. The match starts one character after the
    # candidate (or at it, at the start of the text or of a check right after a region).
    not_after: str | None = None


def _rule(
    kind: str,
    candidate: str,
    body: str,
    replacer: Replacer,
    *,
    lead: str = "",
    flags: int = 0,
    back: str | None = None,
    not_after: str | None = None,
) -> Rule:
    """A rule; with `back`, `candidate` is an anchor and the full candidate is `back` + `candidate`."""
    pattern = re.compile(lead + body, re.ASCII | flags)
    lead_free = re.compile(body, re.ASCII | flags) if lead else None
    back_re = re.compile(back + r"\Z", re.ASCII | flags) if back else None
    if lead == r"\b" and not back:  # the scan checks the word boundary too: no candidate inside a word
        candidate = rf"\b(?:{candidate})"
    full = f"(?:{back})(?:{candidate})" if back else None
    return Rule(
        kind, candidate, pattern, replacer, lead_free, back=back_re, full_candidate=full, not_after=not_after
    )


def _whole(kind: str) -> Replacer:
    repl = marker(kind)

    def replace(m: re.Match[str], allowed: Allowed) -> str:
        text = m.group(0)
        return text if MARKER_PREFIX in text or allowed(text) else repl

    return replace


def _group(kind: str, name: str) -> Replacer:
    """Redact only the named group, keeping the rest of the match (e.g. the key of key=value). A
    value that is a token of a known format is named by that format (`token ghp_…`: github_token)."""
    repl = marker(kind)

    def replace(m: re.Match[str], allowed: Allowed) -> str:
        value = m.group(name)
        if not value or MARKER_PREFIX in value or allowed(value):  # never a marker twice
            return m.group(0)
        start, end = m.span(name)
        base = m.start(0)
        whole = m.group(0)
        return whole[: start - base] + (_token_marker(value) or repl) + whole[end - base :]

    return replace


def _first_group(kind: str, *names: str) -> Replacer:
    """Redact the first of the named groups that took part in the match."""
    replacers = {name: _group(kind, name) for name in names}

    def replace(m: re.Match[str], allowed: Allowed) -> str:
        for name in names:
            if m.group(name) is not None:
                return replacers[name](m, allowed)
        return m.group(0)

    return replace


# --- validators -------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_prefix_ok(digits: str) -> bool:
    n = len(digits)
    two = int(digits[:2])
    three = int(digits[:3])
    four = int(digits[:4])
    six = int(digits[:6])
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:  # Mastercard
        return n == 16
    if two in (34, 37):  # American Express
        return n == 15
    if four == 6011 or two == 65 or 644 <= three <= 649 or 622126 <= six <= 622925:  # Discover
        return 16 <= n <= 19
    if 3528 <= four <= 3589:  # JCB
        return 16 <= n <= 19
    if two in (36, 38, 39) or 300 <= three <= 305:  # Diners Club
        return 14 <= n <= 19
    if two == 62:  # UnionPay
        return 16 <= n <= 19
    if two in (50, 56, 57, 58, 67) or two == 63:  # Maestro
        return 12 <= n <= 19
    return False


def _card(m: re.Match[str], allowed: Allowed) -> str:
    text = m.group(0)
    digits = text.replace(" ", "").replace("-", "")
    if 13 <= len(digits) <= 19 and _card_prefix_ok(digits) and luhn_ok(digits) and not allowed(text):
        return marker("payment_card")
    return text


_CARD_BODY = (
    r"(?:\d{12,18}"
    r"|\d{3}(?P<cs>[ -])\d{4}(?P=cs)\d{4}(?P=cs)\d{4}(?:(?P=cs)\d{3})?"
    r"|\d{3}(?P<ca>[ -])\d{6}(?P=ca)\d{4,5})"
    r"(?![\w.:/]|-\d)"
)
_CARD_CANDIDATE = (
    r"[0-9](?:[0-9]{12}|[0-9]{3}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]{4}|[0-9]{3}[ -][0-9]{6}[ -][0-9]{4})"
)

_PEM_LABEL = r"[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
_PEM_BEGIN = re.compile(r"-----BEGIN" + _PEM_LABEL)
_PEM_END = re.compile(r"-----END" + _PEM_LABEL)
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=\s\\:-]*")
_PEM_MAX_BODY = 16384


def _confirm_private_key(text: str, start: int, allowed: Allowed, state: dict[str, Any]) -> Edit | None:
    """A BEGIN line up to its END line (when within 16 KB), else up to the end of the base64 body.

    Linear: the next END is searched once per scan and reused for every BEGIN before it, so a text
    of repeated BEGIN lines costs one scan for END, not 16 KB per BEGIN."""
    begin = _PEM_BEGIN.match(text, start)
    if begin is None:
        return None
    stop = begin.end()
    end: re.Match[str] | None = state.get("pem_end")
    no_end_after: int = state.get("pem_no_end_after", len(text) + 1)
    if stop < no_end_after and (end is None or end.start() < stop):
        end = _PEM_END.search(text, stop)
        state["pem_end"] = end
        if end is None:
            state["pem_no_end_after"] = stop
    if end is not None and end.start() >= stop and end.start() - stop <= _PEM_MAX_BODY:
        stop = end.end()
    else:
        body = _PEM_BODY.match(text, stop)
        stop = body.end() if body is not None else stop
    whole = text[start:stop]
    return (start, stop, whole if allowed(whole) else marker("private_key"))


# Country code -> IBAN length (ISO 13616 registry, the common ones; unknown countries: 15..34).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27,
    "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24,
    "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(compact: str) -> bool:
    country = compact[:2]
    expected = _IBAN_LENGTHS.get(country)
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _iban(m: re.Match[str], allowed: Allowed) -> str:
    text = m.group(0)
    compact = text.replace(" ", "")
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None:  # a registered country: only its length can be valid
        compact = compact[:expected] if len(compact) >= expected else ""
    # A greedy match may have swallowed a trailing word; try the longest valid prefix of groups.
    while len(compact) >= 15:
        if iban_ok(compact):
            if allowed(text):
                return text
            kept = _tail_after_compact(text, len(compact))
            return marker("iban") + kept
        compact = compact[:-1]
    return text


def _tail_after_compact(text: str, n: int) -> str:
    seen = 0
    for i, ch in enumerate(text):
        if ch != " ":
            seen += 1
            if seen == n:
                return text[i + 1 :]
    return ""


def _ssn(m: re.Match[str], allowed: Allowed) -> str:
    text = m.group(0)
    area, group, serial = text.split("-")
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000" or allowed(text):
        return text
    return marker("us_ssn")


def international_phone_ok(digits: str) -> bool:
    """`digits` (after the `+`) start with a country calling code and the rest has a length that
    libphonenumber's data allows for it."""
    for size in (1, 2, 3):
        lengths = NSN_LENGTHS.get(int(digits[:size])) if len(digits) > size else None
        if lengths is not None:
            return lengths[0] <= len(digits) - size <= lengths[1]
    return False


def _phone_international(m: re.Match[str], allowed: Allowed) -> str:
    text = m.group(0)
    digits = "".join(ch for ch in text if ch.isdigit())
    if international_phone_ok(digits) and not allowed(text):
        return marker("phone")
    return text


def _phone_national(m: re.Match[str], allowed: Allowed) -> str:
    """North American numbers: area code and exchange start with 2-9 (NANP); others by format."""
    text = m.group(0)
    digits = "".join(ch for ch in text if ch.isdigit())
    national = digits[0] == "0"  # a trunk prefix: French and British formats
    if not national and (digits[0] < "2" or digits[3] < "2"):
        return text
    if (len(digits) in (10, 11) if national else len(digits) == 10) and not allowed(text):
        return marker("phone")
    return text


def _phone_context(m: re.Match[str], allowed: Allowed) -> str:
    digits = sum(ch.isdigit() for ch in m.group("value"))
    if 7 <= digits <= 15:
        return _group("phone", "value")(m, allowed)
    return m.group(0)


def _ipv4(m: re.Match[str], allowed: Allowed) -> str:
    text = m.group(0)
    octets = text.split(".")
    if any(len(o) > 1 and o[0] == "0" for o in octets) or int(octets[0]) > 255:
        return text  # 01.02.03.04 or 999.1.1.1: a version, a date, not an address
    if text.startswith(("127.", "0.0.0.0")) or allowed(text):  # noqa: S104 - loopback/unspecified are kept
        return text
    return marker("ip")


def _ipv6(m: re.Match[str], allowed: Allowed) -> str:
    text = m.group(0)
    if text.count(":") < 2 or allowed(text):
        return text
    core = text.split("%", 1)[0]
    try:
        addr = ipaddress.IPv6Address(core)
    except ValueError:
        return text
    if addr.is_loopback or addr.is_unspecified:
        return text
    # Require something that looks like an address, not `ab::cd` in C++ or `1::2` in prose.
    if len([g for g in core.split(":") if g]) < 3 and not addr.ipv4_mapped:
        return text
    return marker("ip")


# --- keyed values ---------------------------------------------------------------------------------

_NOT_IN_TOKEN = r"(?<![A-Za-z0-9_])"  # noqa: S105 - a regex, not a password
_END_TOKEN = r"(?![A-Za-z0-9_])"  # noqa: S105


# Keys whose VALUE is a secret. The key must end at one of these words (so `password_hash`,
# `api_key_id`, `auth_tokens`, `secret_santa` are not keys), optionally prefixed (`db_password`,
# `x-api-key`, `aws_secret_access_key`, `client_secret`).
# The match starts at the sensitive word (a prefix such as `db_`, `x-`, `aws_` is not part of it, and
# `PGPASSWORD`-style glued prefixes are allowed for passwords only).
def _secret_words(lead: bool) -> str:
    def nb(c: str) -> str:  # not glued to a preceding letter/digit; c: the first char just matched
        return f"(?<![A-Za-z0-9]{c})" if lead else ""

    return (
        r"[pP](?i:assw(?:or)?d)"
        r"|[pP]" + nb("[pP]") + r"(?i:wd|assphrase|rivate[_-]?key)"
        r"|[sS]" + nb("[sS]") + r"(?i:ecret(?:[_-]?key)?|ession[_-]?key|igning[_-]?key|et-cookie)"
        r"|[tT]" + nb("[tT]") + r"(?i:oken)"
        r"|[aA]" + nb("[aA]") + r"(?i:pi[_-]?key|ccess[_-]?key|uth[_-]?key|ccount[_-]?key|uthorization)"
        r"|[eE]" + nb("[eE]") + r"(?i:ncryption[_-]?key)"
        r"|[mM]" + nb("[mM]") + r"(?i:aster[_-]?key)"
        r"|[cC]" + nb("[cC]") + r"(?i:lient[_-]?key|redentials?|ookie)"
        r"|[dD]" + nb("[dD]") + r"(?i:sn)"
    )


_KEY_CANDIDATE = (
    r"(?i:passw(?:or)?d|pwd|passphrase|private[_-]?key|secret(?:[_-]?key)?|session[_-]?key"
    r"|signing[_-]?key|set-cookie|token|api[_-]?key|access[_-]?key|auth[_-]?key|account[_-]?key"
    r"|authorization|encryption[_-]?key|master[_-]?key|client[_-]?key|credentials?|cookie|dsn)"
)
_VALUE_UNQUOTED = r"(?!\[REDACTED:)(?!(?i:null|none|true|false|nil)\b)[^\s,;&\"'}\])<>]+"
_VALUE_DQ = r"(?!\[REDACTED:)(?:\\.|[^\"\\\n]){1,4096}"
_VALUE_SQ = r"(?!\[REDACTED:)(?:\\.|[^'\\\n]){1,4096}"


def _keyed_body(lead: bool) -> str:
    return (
        rf"(?P<key>{_secret_words(lead)})[\"']?{_END_TOKEN}"
        rf"(?:\s*(?:=|:|=>|:=)\s*|\s+(?=['\"]))"
        rf"(?:\"(?P<dq>{_VALUE_DQ})\"|'(?P<sq>{_VALUE_SQ})'|(?P<bare>{_VALUE_UNQUOTED}))"
    )


KEYED_RE = re.compile(_keyed_body(True), re.ASCII)
_HEADER_SCHEMES = (
    "bearer|basic|token|digest|negotiate|ntlm|ssws|apikey|api-key|key|hmac|sharedkey|aws4-hmac-sha256"
    "|sharedaccesssignature"
)
_AUTH_SCHEMES = ("bearer", "basic", "token", "digest", "negotiate", "ssws", "apikey")


def _keyed(m: re.Match[str], allowed: Allowed) -> str:
    for name in ("dq", "sq", "bare"):
        if m.group(name) is not None:
            key = m.group("key").lower()
            # `Authorization: Bearer xyz` -> keep the scheme word; the header rule redacts the rest.
            scheme = m.group(name).lower().partition(" ")[0]
            if key in ("authorization", "proxy-authorization") and scheme in _AUTH_SCHEMES:
                return m.group(0)
            kind = "password" if ("pass" in key or key == "pwd") else "secret"
            return _group(kind, name)(m, allowed)
    return m.group(0)


# A password given in a sentence: "my password is hunter2", "pwd Tr0ub4dor&3", "the password for the
# db is 'x y z'". The value must look like a password (a digit, a symbol or inner upper case) unless
# it is quoted, so prose such as "password is incorrect" or "password reset" is kept.
_NL_SEP = (
    r"(?:[ \t]+(?i:is|was|will[ \t]+be|now|set[ \t]+to|changed[ \t]+to)[ \t]+"
    r"|[ \t]*(?:=|:|->)[ \t]*|[ \t]+(?i:to|as)[ \t]+(?=[\"'`])|[ \t]+)"
)
_NL_PASSWORD_BODY = (
    r"(?i:pass(?:word|phrase|code|wd)|pwd|pw)(?![A-Za-z0-9_])"
    r"(?:[ \t]+(?i:for|of|on|to)[ \t]+[^\s,;:=]{1,40}?(?:[ \t]+[^\s,;:=]{1,40}?)??)?"
    + _NL_SEP
    + r"(?:(?P<q>[\"'`])(?P<quoted>(?!\[REDACTED:)[^\"'`\n]{1,128})(?P=q)"
    r"|(?P<bare>(?!\[REDACTED:)[^\s\"'`,;]{3,127}[^\s\"'`,;.!?)\]]))"
)
_PASSWORD_SYMBOL = re.compile(r"[\d\W_]|[a-z][A-Z]")


def _nl_password(m: re.Match[str], allowed: Allowed) -> str:
    if m.group("quoted") is not None:
        return _group("password", "quoted")(m, allowed)
    value = m.group("bare")
    if value is None or not _PASSWORD_SYMBOL.search(value) or value.startswith(("http://", "https://")):
        return m.group(0)
    return _group("password", "bare")(m, allowed)


def _auth_header(m: re.Match[str], allowed: Allowed) -> str:
    value = m.group("value")
    if value.lower() in ("null", "none", "true", "false", "nil", "undefined"):
        return m.group(0)
    return _group("bearer_token" if m.group("scheme") else "secret", "value")(m, allowed)


def _basic(m: re.Match[str], allowed: Allowed) -> str:
    """`Basic <base64 of user:password>`, however short: only if it decodes to `user:password`."""
    value = m.group("value")
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return m.group(0)
    if b":" not in decoded or not all(32 <= b < 127 for b in decoded):
        return m.group(0)
    return _group("bearer_token", "value")(m, allowed)


def _short_token(m: re.Match[str], allowed: Allowed) -> str:
    value = m.group("value")
    if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return m.group(0)
    return _group("bearer_token", "value")(m, allowed)


_COOKIE_NAME = re.compile(r"\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*\Z")  # an RFC 6265 token
# name=value pairs only, so the match ends where the header's pairs end (prose is no cookie)
_COOKIE_PAIR = r"[!#$%&*+.^_`|~0-9A-Za-z-]{1,256}[ \t]*=[^;\r\n\"']{0,4096}"
_COOKIE_PAIRS = _COOKIE_PAIR + r"(?:;[ \t]*" + _COOKIE_PAIR + r"){0,255};?"


def _cookie(m: re.Match[str], allowed: Allowed) -> str:
    """Every value of a `Cookie` header (name=value; name=value), the first one of `Set-Cookie`."""
    value = m.group("value")
    only_first = m.group("set") is not None
    parts = value.split(";")
    changed = False
    for i, part in enumerate(parts):
        name, eq, val = part.partition("=")
        core = val.strip()
        if not _COOKIE_NAME.match(name):
            continue  # not a cookie pair (`Cookie: UPDATE t SET a = b` is prose)
        if eq and core and not core.startswith(MARKER_PREFIX) and not allowed(core):
            lead = val[: len(val) - len(val.lstrip())]
            trail = val[len(val.rstrip()) :]
            parts[i] = f"{name}={lead}{marker('secret')}{trail}"
            changed = True
        if only_first and eq:
            break
    if not changed:
        return m.group(0)
    start, end = m.span("value")
    base = m.start()
    whole = m.group(0)
    return whole[: start - base] + ";".join(parts) + whole[end - base :]


def _curl_user(m: re.Match[str], allowed: Allowed) -> str:
    if m.group("user").isdigit() and m.group("password").isdigit():
        return m.group(0)  # `-u 1000:1000`: a uid:gid, not a credential
    return _group("password", "password")(m, allowed)


# --- INSERT ... VALUES: the values of password-like columns ----------------------------------------

_INSERT_HEAD = re.compile(
    r"(?i:insert)\s+(?i:into)\s+[^\s(]{1,256}\s*\((?P<cols>[^()]{1,4096})\)\s*(?i:values)\s*", re.ASCII
)
_SECRET_COLUMN = re.compile(r"(?:" + _secret_words(False) + r")" + r"$", re.ASCII)
_INSERT_MAX = 65536


def _split_values(text: str, pos: int, limit: int) -> tuple[list[tuple[int, int]], int] | None:
    """The value spans of one `( ... )` tuple starting at `pos` (quotes, '' escapes, nested
    parentheses), and the position after it; None if it does not close within `limit`."""
    if pos >= limit or text[pos] != "(":
        return None
    spans: list[tuple[int, int]] = []
    depth = 0
    start = pos + 1
    i = pos + 1
    while i < limit:
        ch = text[i]
        if ch in "'\"":
            close = text.find(ch, i + 1, limit)
            while close >= 0 and ch == "'" and close + 1 < limit and text[close + 1] == "'":
                close = text.find(ch, close + 2, limit)
            if close < 0:
                return None
            i = close + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                spans.append((start, i))
                return spans, i + 1
            depth -= 1
        elif ch == "," and depth == 0:
            spans.append((start, i))
            start = i + 1
        i += 1
    return None


def _confirm_insert(text: str, start: int, allowed: Allowed, _state: dict[str, Any]) -> Edit | None:
    head = _INSERT_HEAD.match(text, start)
    if head is None:
        return None
    columns = [c.strip().strip('`"[]').lower() for c in head.group("cols").split(",")]
    secret = [i for i, c in enumerate(columns) if _SECRET_COLUMN.search(c.rsplit(".", 1)[-1])]
    if not secret:
        return None
    limit = min(len(text), head.end() + _INSERT_MAX)
    pos = head.end()
    edits: list[tuple[int, int]] = []
    while True:
        found = _split_values(text, pos, limit)
        if found is None:
            break
        spans, pos = found
        for i in secret:
            if i < len(spans):
                s, e = spans[i]
                raw = text[s:e].strip()
                if (
                    raw
                    and raw.upper() not in ("NULL", "DEFAULT", "?")
                    and not raw.startswith(("%s", ":", "$"))
                ):
                    if raw[0] in "'\"" and len(raw) >= 2:
                        inner_s = text.index(raw[0], s) + 1
                        edits.append((inner_s, inner_s + len(raw) - 2))
                    else:
                        lead = len(text[s:e]) - len(text[s:e].lstrip())
                        edits.append((s + lead, s + lead + len(raw)))
        sep = re.compile(r"\s*,\s*").match(text, pos, limit)
        if sep is None or sep.end() >= limit or text[sep.end()] != "(":
            break
        pos = sep.end()
    edits = [(s, e) for s, e in edits if e > s and not allowed(text[s:e]) and MARKER_PREFIX not in text[s:e]]
    if not edits:
        return None
    parts: list[str] = []
    last = start
    for s, e in edits:
        parts += [text[last:s], marker("password")]
        last = e
    parts.append(text[last:pos])
    return (start, pos, "".join(parts))


# --- vendor tokens (formats from the public rule sets of gitleaks, detect-secrets, trufflehog) ------

_TOKENS: tuple[tuple[str, ...], ...] = (
    # kind, body (after a word boundary), candidate (RE2)[, back: what precedes the candidate]
    ("jwt", r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", r"eyJ[A-Za-z0-9_-]{4}"),
    ("anthropic_api_key", r"sk-ant-(?:api|admin|oat|sid)\d{2}-[A-Za-z0-9_-]{20,}",
     r"sk-ant-(?:api|admin|oat|sid)[0-9]{2}-[A-Za-z0-9_-]{20}"),
    ("openai_api_key", r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}", r"sk-[A-Za-z0-9_-]{20}"),
    ("aws_access_key",
     r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}\b",
     r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}"),
    ("digitalocean_token", r"do[por]_v1_[a-f0-9]{64}\b", r"do[por]_v1_[a-f0-9]{64}"),
    ("alibaba_access_key", r"LTAI[A-Za-z0-9]{12,20}\b", r"LTAI[A-Za-z0-9]{12}"),
    ("github_token", r"(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,251})\b",
     r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22}"),
    ("gitlab_token", r"gl(?:pat|dt|rt|ptt|ft|imt|agent|oas|cbt|soat|ffct|cc)-[A-Za-z0-9_-]{20,}",
     r"gl(?:pat|dt|rt|ptt|ft|imt|agent|oas|cbt|soat|ffct|cc)-[A-Za-z0-9_-]{20}"),
    ("slack_token", r"(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,})",
     r"xox[abposre]-[A-Za-z0-9-]{10}|xapp-[0-9]-[A-Za-z0-9-]{10}"),
    ("stripe_key", r"(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,})",
     r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16}|whsec_[A-Za-z0-9]{24}"),
    ("google_api_key", r"(?:AIza[0-9A-Za-z_-]{35}|ya29\.[0-9A-Za-z_-]{20,}|GOCSPX-[A-Za-z0-9_-]{20,})",
     r"AIza[0-9A-Za-z_-]{35}|ya29\.[0-9A-Za-z_-]{20}|GOCSPX-[A-Za-z0-9_-]{20}"),
    ("huggingface_token", r"(?:hf_|api_org_)[A-Za-z0-9]{30,}\b", r"(?:hf_|api_org_)[A-Za-z0-9]{30}"),
    ("sendgrid_api_key", r"SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{30,64}", r"SG\.[A-Za-z0-9_-]{16,32}\."),
    ("npm_token", r"npm_[A-Za-z0-9]{36}\b", r"npm_[A-Za-z0-9]{36}"),
    ("pypi_token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50}"),
    ("shopify_token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("vault_token", r"hv[sb]\.[A-Za-z0-9_-]{24,}", r"hv[sb]\.[A-Za-z0-9_-]{24}"),
    ("databricks_token", r"dapi[a-f0-9]{32}(?:-\d)?\b", r"dapi[a-f0-9]{32}"),
    ("age_secret_key", r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", r"AGE-SECRET-KEY-1"),
    ("square_token", r"sq0(?:atp|csp)-[0-9A-Za-z_-]{22,43}\b", r"sq0(?:atp|csp)-[0-9A-Za-z_-]{22}"),
    ("newrelic_key", r"(?:NRAK-[A-Z0-9]{27}|NRJS-[a-f0-9]{19}|NRII-[A-Za-z0-9_-]{32})\b",
     r"NRAK-[A-Z0-9]{27}|NRJS-[a-f0-9]{19}|NRII-[A-Za-z0-9_-]{32}"),
    ("grafana_token", r"(?:glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})",
     r"glc_[A-Za-z0-9+/]{32}|glsa_[A-Za-z0-9]{32}_"),
    ("postman_key", r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}\b", r"PMAK-[a-f0-9]{24}-"),
    ("linear_api_key", r"lin_api_[A-Za-z0-9]{40}\b", r"lin_api_[A-Za-z0-9]{40}"),
    ("doppler_token", r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}\b", r"dp\.(?:pt|st|sa|ct|scim|audit)\."),  # noqa: E501
    ("pulumi_token", r"pul-[a-f0-9]{40}\b", r"pul-[a-f0-9]{40}"),
    ("mailgun_key", r"key-[0-9a-f]{32}\b", r"key-[0-9a-f]{32}"),
    ("mailchimp_key", r"[0-9a-f]{32}-us\d{1,2}\b", r"-us[0-9]", r"[0-9a-f]{32}"),
    ("telegram_bot_token", r"\d{5,16}:AA[0-9A-Za-z_-]{33}\b", r":AA[0-9A-Za-z_-]{33}", r"\d{5,16}"),
    ("twilio_key", r"(?:SK|AC)[0-9a-f]{32}\b", r"(?:SK|AC)[0-9a-f]{32}"),
    ("facebook_token", r"EAACEdEose0cBA[0-9A-Za-z]+", r"EAACEdEose0cBA"),
    ("atlassian_token", r"ATATT3[A-Za-z0-9_=-]{150,}", r"ATATT3[A-Za-z0-9_=-]{150}"),
    ("dynatrace_token", r"dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}\b", r"dt0c01\.[A-Z0-9]{24}\."),
    ("sentry_token", r"(?:sntrys_[A-Za-z0-9+/=_]{40,}|sntryu_[a-f0-9]{64})", r"sntry[su]_[A-Za-z0-9+/=_]{40}"),  # noqa: E501
    ("heroku_key", r"HRKU-[A-Za-z0-9_-]{60}\b", r"HRKU-[A-Za-z0-9_-]{60}"),
    ("supabase_token", r"sbp_[a-f0-9]{40}\b", r"sbp_[a-f0-9]{40}"),
    ("planetscale_token", r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9=._-]{32,64}\b", r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9=._-]{32}"),  # noqa: E501
    ("notion_token", r"ntn_\d{11}[A-Za-z0-9]{35}\b", r"ntn_[0-9]{11}[A-Za-z0-9]{35}"),
    ("airtable_token", r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}\b", r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}"),
    ("replicate_token", r"r8_[A-Za-z0-9]{37}\b", r"r8_[A-Za-z0-9]{37}"),
    ("groq_api_key", r"gsk_[A-Za-z0-9]{52}\b", r"gsk_[A-Za-z0-9]{52}"),
    ("xai_api_key", r"xai-[A-Za-z0-9]{80}\b", r"xai-[A-Za-z0-9]{80}"),
    ("perplexity_api_key", r"pplx-[A-Za-z0-9]{48}\b", r"pplx-[A-Za-z0-9]{48}"),
    ("langsmith_key", r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}\b", r"lsv2_(?:pt|sk)_[a-f0-9]{32}_"),
    ("figma_token", r"figd_[A-Za-z0-9_-]{40}\b", r"figd_[A-Za-z0-9_-]{40}"),
    ("flutterwave_key", r"FLW(?:SEC|PUB)K_TEST-[a-h0-9]{32}-X", r"FLW(?:SEC|PUB)K_TEST-"),
    ("shippo_token", r"shippo_(?:live|test)_[a-f0-9]{40}\b", r"shippo_(?:live|test)_[a-f0-9]{40}"),
)  # fmt: skip


_TOKEN_RE = re.compile("|".join(f"(?P<t{i}>{token[1]})" for i, token in enumerate(_TOKENS)), re.ASCII)


def _token_marker(value: str) -> str | None:
    if len(value) < 16:
        return None
    m = _TOKEN_RE.fullmatch(value)
    return marker(_TOKENS[int(m.lastgroup[1:])][0]) if m is not None and m.lastgroup else None


_PHONE_WORDS = (
    r"(?i:phone|tel|telephone|mobile|cell|fax|whatsapp|sms|mob|call(?:[ \t]+(?:me|us))?[ \t]+(?:at|on))"
)


def build_rules(*, scrub_ip: bool) -> list[Rule]:
    """The built-in rules, highest priority first (at one start position the first that confirms wins)."""
    rules: list[Rule] = [
        Rule("private_key", r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY", confirm=_confirm_private_key),
        # scheme://user:password@host  (also DSNs: postgresql://, mysql+pymysql://, redis://, amqp://)
        _rule(
            "url_credentials",
            r"://[^\s:/?#@\[\]]{0,64}[:@]",
            r"[a-z][a-z0-9+.-]{0,30}://[^\s:/?#@\[\]]*:(?P<password>(?!\[REDACTED:)[^\s/?#]+)@",
            _group("password", "password"),
            lead=r"\b",
            flags=re.IGNORECASE,
            back=r"[a-z][a-z0-9+.-]{0,30}",
        ),
        # the same, URL-encoded: postgresql%3A%2F%2Fapp%3Apw%40db
        _rule(
            "url_credentials",
            r"(?i:%3a%2f%2f)",
            r"[a-z][a-z0-9+.-]{0,30}%3a%2f%2f(?:[A-Za-z0-9._~!$'()*+,;=-]|%(?!3a|40|2f)[0-9a-f]{2}){0,256}%3a"
            r"(?P<password>(?!\[REDACTED:)(?:[A-Za-z0-9._~!$'()*+,;=-]|%(?!40|2f)[0-9a-f]{2}){1,512})%40",
            _group("password", "password"),
            lead=r"\b",
            flags=re.IGNORECASE,
            back=r"[a-z][a-z0-9+.-]{0,30}",
        ),
        _rule(
            "password",
            r"(?i:(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|access[_-]?token|client[_-]?secret)%3d)",
            r"(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|access[_-]?token|client[_-]?secret)%3d"
            r"(?P<value>(?!\[REDACTED:)(?:[A-Za-z0-9._~!*'()+-]|%(?!26|3b)[0-9a-f]{2}){1,1024})",
            _group("password", "value"),
            lead=r"(?:(?<![A-Za-z0-9])|(?<=%[0-9a-f]{2}))",  # also after an encoded separator (%26, %3F)
            flags=re.IGNORECASE,
        ),
        # Oracle thin JDBC and SQL*Plus: user/password@host
        _rule(
            "password",
            r"(?i:jdbc:oracle:[a-z0-9]+:[^\s/@]{1,128}/|sqlplus[^\n/]{1,64}/)",
            r"(?:(?i:jdbc:oracle:[a-z0-9]+):|(?i:sqlplus)(?:[ \t]+-\w+)*[ \t]+)"
            r"(?P<user>[A-Za-z0-9_$#.\"]{1,128})/(?P<password>(?!\[REDACTED:)[^\s@/;\"']{1,256})@",
            _group("password", "password"),
            lead=r"\b",
        ),
        # ODBC brace-quoted values: PWD={a;b}}c}
        _rule(
            "password",
            r"(?i:(?:pwd|password)[ \t]*=[ \t]*\{)",
            r"(?i:pwd|password)[ \t]*=[ \t]*\{(?P<value>(?:[^}\n]|\}\}){1,1024})\}",
            _group("password", "value"),
            lead=_NOT_IN_TOKEN,
        ),
        # SQL: CREATE/ALTER USER ... IDENTIFIED BY 'pw'
        _rule(
            "password",
            r"(?i:identified\s+by\s)",
            r"(?i:identified)\s+(?i:by)\s+(?:(?i:password)\s+)?"
            r"(?:'(?P<sq>(?!\[REDACTED:)(?:''|[^'\n]){1,256})'|\"(?P<dq>(?!\[REDACTED:)[^\"\n]{1,256})\""
            r"|(?P<bare>(?!\[REDACTED:)[^\s;'\"]{1,256}))",
            _first_group("password", "sq", "dq", "bare"),
            lead=r"\b",
        ),
        Rule("password", r"(?i:insert\s+into\s)", confirm=_confirm_insert),
        # curl -u user:password, --user=user:password
        _rule(
            "password",
            r"(?:-u|--user)(?:[ \t]+|=)[\"']?[^\s:\"']{1,256}:",
            r"(?:-u|--user)(?:[ \t]+|=)[\"']?(?P<user>[^\s:\"']{1,256}):"
            r"(?P<password>(?!\[REDACTED:)[^\s\"']{1,256})",
            _curl_user,
            lead=r"(?<![\w-])",
        ),
        _rule(
            "secret",
            r"(?i:(?:proxy-)?authorization[\"']?\s*[:=])",
            r"(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
            r"(?:(?P<scheme>" + _HEADER_SCHEMES + r")\s+|(?!(?:" + _HEADER_SCHEMES + r")\s))"
            r"(?P<value>(?!\[REDACTED:)[^\s\"',;]{1,4096})",
            _auth_header,
            lead=r"\b",
            flags=re.IGNORECASE,
        ),
        _rule(
            "secret",
            r"(?i:(?:set-)?cookie[\"']?\s*:)",
            r"(?P<set>set-)?cookie[\"']?\s*:[ \t]*[\"']?(?P<value>" + _COOKIE_PAIRS + ")",
            _cookie,
            lead=r"(?<![\w-])",  # not the `Cookie` of `Set-Cookie`
            flags=re.IGNORECASE,
        ),
    ]
    rules += [
        _rule(kind, cand, body, _whole(kind), lead=r"\b", back=rest[0] if rest else None)
        for kind, body, cand, *rest in _TOKENS
    ]
    rules += [
        _rule(
            "azure_client_secret",
            r"Q~[A-Za-z0-9_~.-]{31}",
            r"[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])",
            _whole("azure_client_secret"),
            lead=r"(?<![A-Za-z0-9_~.-])",
            back=r"[A-Za-z0-9_~.-]{3}\d",
        ),
        _rule(
            "azure_sas_signature",
            r"[?&]sig=[A-Za-z0-9%+/=]{20}",
            r"[?&]sig=(?P<value>(?!\[REDACTED:)[A-Za-z0-9%+/=]{20,})",
            _group("azure_sas_signature", "value"),
        ),
        _rule(
            "slack_token",
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/",
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}",
            _whole("slack_token"),
        ),
        _rule(
            "bearer_token",
            r"(?i:(?:bearer|basic|token|digest|ssws|apikey)\s+[A-Za-z0-9._~+/-]{16})",
            r"(?:bearer|basic|token|digest|ssws|apikey)\s+(?P<value>(?!\[REDACTED:)[A-Za-z0-9._~+/-]{16,}=*)",
            _group("bearer_token", "value"),
            lead=r"\b",
            flags=re.IGNORECASE,
        ),
        # short credentials: `Basic dXNlcjpwdw==` (decodes to user:password), `Token ab12cd34`
        _rule(
            "bearer_token",
            r"Basic\s+[A-Za-z0-9+/]{4}",
            r"Basic\s+(?P<value>[A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])",
            _basic,
            lead=r"\b",
        ),
        _rule(
            "bearer_token",
            r"Token\s+[A-Za-z0-9._~+/-]{8}",
            r"Token\s+(?P<value>[A-Za-z0-9._~+/-]{8,}=*)(?![A-Za-z0-9._~+/=-])",
            _short_token,
            lead=r"\b",
        ),
        Rule(
            "secret",
            _KEY_CANDIDATE + r"[\"']?\s*(?:=|:|\s[\"'])",
            KEYED_RE,
            _keyed,
            lead_free=re.compile(_keyed_body(False), re.ASCII),
        ),
        _rule(
            "password",
            r"(?i:pass(?:word|phrase|code|wd)|pwd|pw)(?:[^A-Za-z0-9_]|$)",
            _NL_PASSWORD_BODY,
            _nl_password,
            lead=_NOT_IN_TOKEN,
        ),
        _rule(
            "email",
            r"@[A-Za-z0-9][A-Za-z0-9-]{0,62}\.[A-Za-z0-9]",  # a domain needs a dot: `a@a@a…` is no flood
            r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])",
            _whole("email"),
            lead=r"(?<![A-Za-z0-9._%+-])",
            back=r"[A-Za-z0-9._%+-]{1,64}",
        ),
        _rule(
            "iban",
            # Ends at a word boundary or where the next IBAN begins (IBANs glued back to back).
            r"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}",
            r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?:\b|(?=[A-Z]{2}\d{2}))",
            _iban,
            lead=r"\b",
        ),
        _rule(
            "payment_card",
            _CARD_CANDIDATE,
            r"\d" + _CARD_BODY,
            _card,
            lead=r"(?<![\w.:/-])",
            not_after=r"\w.:/-",
        ),
        _rule(
            "us_ssn",
            r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
            r"\d\d\d-\d{2}-\d{4}(?![\w.:/-]|-\d)",
            _ssn,
            lead=r"(?<![\w.:/-])",
            not_after=r"\w.:/-",
        ),
        _rule(
            "phone",
            r"\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}[ .-]?[0-9]{2}",
            r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}(?![\w:/-]|\.\d)",
            _phone_international,
            lead=r"(?<![\w+.:/-])",
            not_after=r"\w+.:/-",
        ),
        _rule(
            "phone",
            # North American (415) 555-0132 / 415-555-0132, French 01 23 45 67 89, UK 020 7946 0958
            r"\([0-9]{3}\)[ .-]?[0-9]{3}[ .-][0-9]{4}|[0-9]{3}[ .-][0-9]{3}[ .-][0-9]{4}"
            r"|0[1-9](?:[ .][0-9]{2}){4}|0[0-9]{2,4} [0-9]{3,4} [0-9]{3,4}",
            r"(?:\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[ .-]\d{3}[ .-]\d{4}"
            r"|0[1-9](?:[ .]\d{2}){4}|0\d{2,4} \d{3,4} \d{3,4})(?![\w:/-]|\.\d)",
            _phone_national,
            lead=r"(?<![\w+.:/-])",
            not_after=r"\w+.:/-",
        ),
        _rule(
            "phone",
            _PHONE_WORDS + r"[^A-Za-z0-9_\n]{0,12}(?i:number|no|nr)?[^A-Za-z0-9_\n]{0,4}\+?\(?[0-9]",
            _PHONE_WORDS + r"(?:[ \t]*(?i:number|no|nr)\.?)?[ \t]*[:=#-]?[ \t]*"
            r"(?P<value>\+?\(?\d[\d ().-]{5,22}\d)(?![\w:/]|[.-]\d)",
            _phone_context,
            lead=r"\b",
        ),
    ]
    if scrub_ip:
        rules += [
            _rule(
                "ip",
                r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
                r"\d\d{0,2}\.(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){2}"
                r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                r"(?![\w-]|\.\d)",
                _ipv4,
                lead=r"(?<![\w.:-])",
                not_after=r"\w.:-",
            ),
            _rule(
                "ip",
                r"(?i:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6}::|::|(?:[0-9a-f]{1,4}:){6}[0-9a-f])",
                r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?"
                r"(?:%[A-Za-z0-9]+)?(?![\w:.-])",
                _ipv6,
                lead=r"(?<![\w:.-])",
                not_after=r"\w:.-",
            ),
        ]
    return rules
