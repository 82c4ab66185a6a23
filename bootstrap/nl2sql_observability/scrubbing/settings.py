"""Scrubbing settings, from environment variables prefixed `OBSERVABILITY_SCRUB_`."""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from nl2sql_observability.scrubbing._scrubber import Scrubber, ScrubConfigError

ENV_PREFIX = "OBSERVABILITY_SCRUB_"


class ScrubSettings(BaseSettings):
    """`OBSERVABILITY_SCRUB_IP` (default true), `OBSERVABILITY_SCRUB_EXTRA_PATTERNS` (JSON object
    kind -> regex, or JSON list of regexes), `OBSERVABILITY_SCRUB_ALLOW` (JSON list of regexes)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    ip: bool = Field(default=True, description="Redact IPv4/IPv6 addresses (loopback is kept).")
    extra_patterns: dict[str, str] | list[str] = Field(
        default_factory=list,
        description='More things to redact: JSON {"kind": "regex"} or ["regex", ...] (kind `custom`).',
    )
    allow: list[str] = Field(
        default_factory=list, description="JSON list of regexes; a detected value fully matching one is kept."
    )

    def build(self) -> Scrubber:
        return Scrubber(
            extra_patterns=self.extra_patterns,
            allow=self.allow,
            scrub_ip=self.ip,
            setting_names=(f"{ENV_PREFIX}EXTRA_PATTERNS", f"{ENV_PREFIX}ALLOW"),
        )


_EXPECTED = {
    f"{ENV_PREFIX}EXTRA_PATTERNS": 'JSON: a list of regexes ["ACME-\\\\d{6}"] or an object {"kind": "regex"}',
    f"{ENV_PREFIX}ALLOW": 'JSON: a list of regexes, e.g. ["test@example\\\\.com"]',
    f"{ENV_PREFIX}IP": "true or false",
}


def load_scrubber() -> Scrubber:
    """Build the scrubber from the environment; raises `ScrubConfigError` naming the bad variable."""
    return load_scrub_settings().build()


def load_scrub_settings() -> ScrubSettings:
    """Read the settings (the patterns are checked by `ScrubSettings.build`); raises `ScrubConfigError`."""
    try:
        return ScrubSettings()
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for err in exc.errors():
            name = f"{ENV_PREFIX}{str(err['loc'][0]).upper() if err['loc'] else '?'}"
            if name in problems:
                continue
            expected = _EXPECTED.get(name, err["msg"])
            problems[name] = f"{name}={err.get('input')!r} is not valid: expected {expected}"
        raise ScrubConfigError("; ".join(problems.values())) from None
    except SettingsError as exc:
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        raise ScrubConfigError(
            f"{ENV_PREFIX}{field.upper()}: not valid JSON (expected a JSON list or object):"
            f" {exc.__cause__ or exc}"
        ) from None
