"""The built-in detection rules: one compiled regex per kind, a cheap prefilter, and a validator.

Design (after pydantic logfire's scrubber, but value-oriented rather than key-oriented):

* Each rule is applied as its own `re.sub` pass, guarded by a prefilter (`needles`: substrings one of
  which must occur, tested with `in`, which is memchr-fast) so text without e.g. an `@` never pays
  for the e-mail regex.
* Replacement text is `[REDACTED:kind]`. Every rule refuses to start inside or consume such a marker,
  so scrubbing is idempotent; `Scrubber.scrub` additionally iterates to a fixpoint when a pass changed
  something, which makes idempotence hold by construction.
* Rules that are checksummed in the real world (payment cards: Luhn, IBAN: mod 97) are validated, so
  order numbers, timestamps and ids that merely look like them are kept.
* Names are never redacted, only values: `password_hash`, `api_key_id`, `auth_tokens`, `secret_santa`
  are not keys of the key=value rule because the key must END at a sensitive word.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

MARKER_PREFIX = "[REDACTED:"
MARKER_RE = re.compile(r"\[REDACTED:[a-z0-9_]+\]")
KIND_RE = re.compile(r"^[a-z0-9_]{1,40}$")


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


Allowed = Callable[[str], bool]
# One replacement: (start, end, new text) in the coordinates of the text the rule ran on.
Edit = tuple[int, int, str]


@dataclass(frozen=True)
class Rule:
    kind: str
    pattern: re.Pattern[str]
    # Substrings of which at least one must be present for the rule to run (case-sensitive `in`);
    # empty means always run. `needles_lower` are tested against text.lower() instead.
    needles: tuple[str, ...] = ()
    needles_lower: tuple[str, ...] = ()
    replacer: Callable[[re.Match[str], Callable[[str], bool]], str] | None = None
    needs_digit: bool = False
    prefilter: Callable[[str], bool] | None = None
    # Instead of `pattern.finditer` + `replacer`: a function (text, allowed) -> edits, in order.
    apply: Callable[[str, Allowed], list[Edit]] | None = None


def _whole(kind: str) -> Callable[[re.Match[str], Callable[[str], bool]], str]:
    repl = marker(kind)

    def replace(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
        text = m.group(0)
        return text if allowed(text) else repl

    return replace


def _group(kind: str, name: str) -> Callable[[re.Match[str], Callable[[str], bool]], str]:
    """Redact only the named group, keeping the rest of the match (e.g. the key of key=value)."""
    repl = marker(kind)

    def replace(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
        value = m.group(name)
        if not value or value.startswith(MARKER_PREFIX) or allowed(value):
            return m.group(0)
        start, end = m.span(name)
        base = m.start(0)
        whole = m.group(0)
        return whole[: start - base] + repl + whole[end - base :]

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


def _card(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
    text = m.group(0)
    digits = text.replace(" ", "").replace("-", "")
    if 13 <= len(digits) <= 19 and _card_prefix_ok(digits) and luhn_ok(digits) and not allowed(text):
        return marker("payment_card")
    return text


# Card formats: 13-19 digits contiguous, 4-4-4-4[-3], 4-6-5 / 4-6-4.
_CARD_RE = re.compile(
    r"\d(?<![\w.:/-]\d)"
    r"(?:\d{12,18}"
    r"|\d{3}(?P<cs>[ -])\d{4}(?P=cs)\d{4}(?P=cs)\d{4}(?:(?P=cs)\d{3})?"
    r"|\d{3}(?P<ca>[ -])\d{6}(?P=ca)\d{4,5})"
    r"(?![\w.:/]|-\d)"
)


def _scrub_cards(text: str, allowed: Allowed) -> list[Edit]:
    """Like `finditer`, but a rejected candidate (Luhn or prefix) does not consume the text: the
    search resumes one character later, so `ref 0132 4111 1111 1111 1111` still finds the card."""
    edits: list[Edit] = []
    pos = 0
    repl = marker("payment_card")
    while True:
        m = _CARD_RE.search(text, pos)
        if m is None:
            return edits
        if _card(m, allowed) == repl:
            edits.append((m.start(), m.end(), repl))
            pos = m.end()
        else:
            pos = m.start() + 1


_PEM_LABEL = r"[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
_PEM_BEGIN = re.compile(r"-----BEGIN" + _PEM_LABEL)
_PEM_END = re.compile(r"-----END" + _PEM_LABEL)
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=\s\\:-]*")
_PEM_MAX_BODY = 16384


def _scrub_private_keys(text: str, allowed: Allowed) -> list[Edit]:
    """A BEGIN line up to its END line (when within 16 KB), else up to the end of the base64 body.

    Linear: the next END is searched once and reused for every BEGIN before it, so a text of
    repeated BEGIN lines costs one scan, not 16 KB per BEGIN (as a lazy `[\\s\\S]{0,16384}?` did)."""
    edits: list[Edit] = []
    repl = marker("private_key")
    pos = 0
    end: re.Match[str] | None = None
    no_end_after = len(text) + 1  # no END line starts at or after this position
    while True:
        begin = _PEM_BEGIN.search(text, pos)
        if begin is None:
            return edits
        stop = begin.end()
        if stop < no_end_after and (end is None or end.start() < stop):
            end = _PEM_END.search(text, stop)
            if end is None:
                no_end_after = stop
        if end is not None and end.start() >= stop and end.start() - stop <= _PEM_MAX_BODY:
            stop = end.end()
        else:
            body = _PEM_BODY.match(text, stop)
            stop = body.end() if body is not None else stop
        whole = text[begin.start() : stop]
        edits.append((begin.start(), stop, whole if allowed(whole) else repl))
        pos = max(stop, begin.start() + 1)


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


def _iban(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
    text = m.group(0)
    compact = text.replace(" ", "")
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


def _ssn(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
    text = m.group(0)
    area, group, serial = text.split("-")
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000" or allowed(text):
        return text
    return marker("us_ssn")


def _phone(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
    text = m.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if 8 <= digits <= 15 and not allowed(text):
        return marker("phone")
    return text


def _ipv4(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
    text = m.group(0)
    octets = text.split(".")
    if any(len(o) > 1 and o[0] == "0" for o in octets) or int(octets[0]) > 255:
        return text  # 01.02.03.04 or 999.1.1.1: a version, a date, not an address
    if text.startswith(("127.", "0.0.0.0")) or allowed(text):  # noqa: S104 - loopback/unspecified are kept
        return text
    return marker("ip")


def _ipv6(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
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


# --- patterns -----------------------------------------------------------------------------------

_NOT_IN_TOKEN = r"(?<![A-Za-z0-9_])"  # noqa: S105 - a regex, not a password
_END_TOKEN = r"(?![A-Za-z0-9_])"  # noqa: S105

# Keys whose VALUE is a secret. The key must end at one of these words (so `password_hash`,
# `api_key_id`, `auth_tokens`, `secret_santa` are not keys), optionally prefixed (`db_password`,
# `x-api-key`, `aws_secret_access_key`, `client_secret`).
# The match starts at the sensitive word (a prefix such as `db_`, `x-`, `aws_` is not part of it, and
# `PGPASSWORD`-style glued prefixes are allowed for passwords only). Each alternative starts with an
# explicit character class so the regex engine can skip positions fast (3x faster than `(?i)` words).
_NB = r"(?<![A-Za-z0-9]{c})"  # not glued to a preceding letter/digit; {c}: the first char just matched
_SECRET_WORDS = (
    r"[pP](?i:assw(?:or)?d)"
    r"|[pP]" + _NB.format(c="[pP]") + r"(?i:wd|assphrase|rivate[_-]?key)"
    r"|[sS]" + _NB.format(c="[sS]") + r"(?i:ecret(?:[_-]?key)?|ession[_-]?key|igning[_-]?key|et-cookie)"
    r"|[tT]" + _NB.format(c="[tT]") + r"(?i:oken)"
    r"|[aA]" + _NB.format(c="[aA]") + r"(?i:pi[_-]?key|ccess[_-]?key|uth[_-]?key|ccount[_-]?key|uthorization)"
    r"|[eE]" + _NB.format(c="[eE]") + r"(?i:ncryption[_-]?key)"
    r"|[mM]" + _NB.format(c="[mM]") + r"(?i:aster[_-]?key)"
    r"|[cC]" + _NB.format(c="[cC]") + r"(?i:lient[_-]?key|redentials?|ookie)"
    r"|[dD]" + _NB.format(c="[dD]") + r"(?i:sn)"
)
_KEY = rf"(?:{_SECRET_WORDS})"
_VALUE_UNQUOTED = r"(?!\[REDACTED:)(?!(?i:null|none|true|false|nil)\b)[^\s,;&\"'}\])<>]+"
_VALUE_DQ = r"(?!\[REDACTED:)(?:\\.|[^\"\\\n]){1,4096}"
_VALUE_SQ = r"(?!\[REDACTED:)(?:\\.|[^'\\\n]){1,4096}"

KEYED_RE = re.compile(
    rf"(?P<key>{_KEY})[\"']?{_END_TOKEN}"
    rf"(?:\s*(?:=|:|=>|:=)\s*|\s+(?=['\"]))"
    rf"(?:\"(?P<dq>{_VALUE_DQ})\"|'(?P<sq>{_VALUE_SQ})'|(?P<bare>{_VALUE_UNQUOTED}))"
)


def _keyed(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
    for name in ("dq", "sq", "bare"):
        if m.group(name) is not None:
            key = m.group("key").lower()
            if key in ("authorization", "proxy-authorization"):
                # `Authorization: Bearer xyz` -> keep the scheme word.
                value = m.group(name).lower()
                if value.partition(" ")[0] in ("bearer", "basic", "token", "digest", "negotiate"):
                    return m.group(0)  # the scheme word is kept; the bearer rule redacts the credential
            kind = "password" if ("pass" in key or key == "pwd") else "secret"
            return _group(kind, name)(m, allowed)
    return m.group(0)


_KEY_HINTS = ("pass", "pwd", "secret", "token", "key", "credential", "authorization", "cookie", "dsn")
# A necessary condition for KEYED_RE (so skipping the rule never changes the result, wherever a
# stream cuts the text): a key word, then `=`/`:` or whitespace and a quote.
_SEP_AFTER_HINT = re.compile(r"[a-z0-9_-]{0,30}[\"']?(?:\s*(?:=|:)|\s+[\"'])")


def _keyed_prefilter(text: str) -> bool:
    """Cheap check (memchr-speed `find`) that some key word is followed by a separator."""
    lowered = text.lower()
    for hint in _KEY_HINTS:
        i = lowered.find(hint)
        while i >= 0:
            if _SEP_AFTER_HINT.match(lowered, i + len(hint)):
                return True
            i = lowered.find(hint, i + 1)
    return False


# A password given in a sentence: "my password is hunter2", "pwd Tr0ub4dor&3", "the password for the
# db is 'x y z'". The value must look like a password (a digit, a symbol or inner upper case) unless
# it is quoted, so prose such as "password is incorrect" or "password reset" is kept.
_NL_SEP = (
    r"(?:[ \t]+(?i:is|was|will[ \t]+be|now|set[ \t]+to|changed[ \t]+to)[ \t]+"
    r"|[ \t]*(?:=|:|->)[ \t]*|[ \t]+)"
)
NL_PASSWORD_RE = re.compile(
    r"(?<![A-Za-z0-9_])(?i:pass(?:word|phrase|code|wd)|pwd|pw)(?![A-Za-z0-9_])"
    r"(?:[ \t]+(?i:for|of|on|to)[ \t]+[^\s,;:=]{1,40}?(?:[ \t]+[^\s,;:=]{1,40}?)??)?"
    + _NL_SEP
    + r"(?:(?P<q>[\"'`])(?P<quoted>(?!\[REDACTED:)[^\"'`\n]{1,128})(?P=q)"
    r"|(?P<bare>(?!\[REDACTED:)[^\s\"'`,;]{3,127}[^\s\"'`,;.!?)\]]))"
)
_PASSWORD_SYMBOL = re.compile(r"[\d\W_]|[a-z][A-Z]")


def _nl_password(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
    if m.group("quoted") is not None:
        return _group("password", "quoted")(m, allowed)
    value = m.group("bare")
    if value is None or not _PASSWORD_SYMBOL.search(value) or value.startswith(("http://", "https://")):
        return m.group(0)
    return _group("password", "bare")(m, allowed)


def _url_credentials(m: re.Match[str], allowed: Callable[[str], bool]) -> str:
    return _group("password", "password")(m, allowed)


_AWS_PREFIXES = (
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "AGPA",
    "AIDA",
    "AIPA",
    "ANPA",
    "ANVA",
    "AROA",
    "APKA",
    "ASCA",
)


def build_rules(*, scrub_ip: bool) -> list[Rule]:
    rules: list[Rule] = [
        Rule("private_key", _PEM_BEGIN, needles=("PRIVATE KEY",), apply=_scrub_private_keys),
        # scheme://user:password@host  (also DSNs: postgresql://, mysql+pymysql://, redis://, amqp://)
        Rule(
            "url_credentials",
            re.compile(
                r"(?i)\b[a-z][a-z0-9+.-]{0,30}://[^\s:/?#@\[\]]*:(?P<password>(?!\[REDACTED:)[^\s/?#]+)@(?=[^\s@]*)"
            ),
            needles=("://",),
            replacer=_url_credentials,
        ),
        Rule(
            "jwt",
            re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
            needles=("eyJ",),
            replacer=_whole("jwt"),
        ),
        Rule(
            "anthropic_api_key",
            re.compile(r"\bsk-ant-(?:api|admin|oat|sid)\d{2}-[A-Za-z0-9_-]{20,}"),
            needles=("sk-ant-",),
            replacer=_whole("anthropic_api_key"),
        ),
        Rule(
            "openai_api_key",
            re.compile(r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}"),
            needles=("sk-",),
            replacer=_whole("openai_api_key"),
        ),
        Rule(
            "aws_access_key",
            # Any upper-case letter or digit in the 16-character suffix (not only base32's A-Z2-7).
            re.compile(r"\b(?:A3T[A-Z0-9]|" + "|".join(_AWS_PREFIXES) + r")[A-Z0-9]{16}\b"),
            needles=("A3T", *_AWS_PREFIXES),
            replacer=_whole("aws_access_key"),
        ),
        Rule(
            "azure_client_secret",
            re.compile(
                r"(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])"
            ),
            needles=("Q~",),
            replacer=_whole("azure_client_secret"),
        ),
        Rule(
            "azure_sas_signature",
            re.compile(r"[?&]sig=(?P<value>(?!\[REDACTED:)[A-Za-z0-9%+/=]{20,})"),
            needles=("sig=",),
            replacer=_group("azure_sas_signature", "value"),
        ),
        Rule(
            "digitalocean_token",
            re.compile(r"\bdo[por]_v1_[a-f0-9]{64}\b"),
            needles=("_v1_",),
            replacer=_whole("digitalocean_token"),
        ),
        Rule(
            "alibaba_access_key",
            re.compile(r"\bLTAI[A-Za-z0-9]{12,20}\b"),
            needles=("LTAI",),
            replacer=_whole("alibaba_access_key"),
        ),
        Rule(
            "github_token",
            re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,251})\b"),
            needles=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
            replacer=_whole("github_token"),
        ),
        Rule(
            "gitlab_token",
            re.compile(r"\bgl(?:pat|dt|rt|ptt|ft|imt|agent|oas|cbt|soat|ffct|cc)-[A-Za-z0-9_-]{20,}"),
            needles=(
                "glpat-",
                "gldt-",
                "glrt-",
                "glptt-",
                "glft-",
                "glimt-",
                "glagent-",
                "gloas-",
                "glcbt-",
                "glsoat-",
                "glffct-",
                "glcc-",
            ),
            replacer=_whole("gitlab_token"),
        ),
        Rule(
            "slack_token",
            re.compile(
                r"\b(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,})"
                r"|https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}"
            ),
            needles=("xox", "xapp-", "hooks.slack.com"),
            replacer=_whole("slack_token"),
        ),
        Rule(
            "stripe_key",
            re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|\bwhsec_[A-Za-z0-9]{24,}"),
            needles=("_live_", "_test_", "whsec_"),
            replacer=_whole("stripe_key"),
        ),
        Rule(
            "google_api_key",
            re.compile(r"\bAIza[0-9A-Za-z_-]{35}|\bya29\.[0-9A-Za-z_-]{20,}|\bGOCSPX-[A-Za-z0-9_-]{20,}"),
            needles=("AIza", "ya29.", "GOCSPX-"),
            replacer=_whole("google_api_key"),
        ),
        Rule(
            "huggingface_token",
            re.compile(r"\b(?:hf_|api_org_)[A-Za-z0-9]{30,}\b"),
            needles=("hf_", "api_org_"),
            replacer=_whole("huggingface_token"),
        ),
        Rule(
            "sendgrid_api_key",
            re.compile(r"\bSG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{30,64}"),
            needles=("SG.",),
            replacer=_whole("sendgrid_api_key"),
        ),
        Rule(
            "npm_token",
            re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
            needles=("npm_",),
            replacer=_whole("npm_token"),
        ),
        Rule(
            "bearer_token",
            re.compile(
                r"(?i)\b(?:bearer|basic|token|digest)\s+(?P<value>(?!\[REDACTED:)[A-Za-z0-9._~+/-]{16,}=*)"
            ),
            needles_lower=("bearer", "basic", "token", "digest"),
            replacer=_group("bearer_token", "value"),
        ),
        Rule(
            "secret",
            KEYED_RE,
            prefilter=_keyed_prefilter,
            replacer=_keyed,
        ),
        Rule(
            "password",
            NL_PASSWORD_RE,
            needles_lower=("pass", "pw"),
            replacer=_nl_password,
        ),
        Rule(
            "email",
            re.compile(
                r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
                r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
            ),
            needles=("@",),
            replacer=_whole("email"),
        ),
        Rule(
            "iban",
            # Ends at a word boundary or where the next IBAN begins (IBANs glued back to back).
            re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?:\b|(?=[A-Z]{2}\d{2}))"),
            needs_digit=True,
            replacer=_iban,
        ),
        Rule(
            "payment_card",
            _CARD_RE,
            needs_digit=True,
            apply=_scrub_cards,
            replacer=_card,
        ),
        Rule(
            "us_ssn",
            re.compile(r"\d(?<![\w.:/-]\d)\d\d-\d{2}-\d{4}(?![\w.:/-]|-\d)"),
            needs_digit=True,
            replacer=_ssn,
        ),
        Rule(
            "phone",
            re.compile(
                r"(?:\+(?<![\w+.:/-]\+)\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
                r"|\((?<![\w+.:/-]\()\d{3}\)[ .-]?\d{3}[ .-]\d{4}"
                r"|\d(?<![\w+.:/-]\d)\d\d[ .-]\d{3}[ .-]\d{4})(?![\w.:/-]|-\d)"
            ),
            needs_digit=True,
            replacer=_phone,
        ),
    ]
    if scrub_ip:
        rules += [
            Rule(
                "ip",
                re.compile(
                    r"\d(?<![\w.:-]\d)\d{0,2}\.(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){2}"
                    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                    r"(?![\w-]|\.\d)"
                ),
                needles=(".",),
                needs_digit=True,
                replacer=_ipv4,
            ),
            Rule(
                "ip",
                re.compile(
                    r"(?<![\w:.-])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?"
                    r"(?:%[A-Za-z0-9]+)?(?![\w:.-])"
                ),
                prefilter=lambda text: "::" in text or text.count(":") >= 7,
                replacer=_ipv6,
            ),
        ]
    return rules
