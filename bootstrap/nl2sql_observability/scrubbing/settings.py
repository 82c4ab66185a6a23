"""Scrubbing settings, from environment variables prefixed `OBSERVABILITY_SCRUB_`."""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from nl2sql_observability.scrubbing._scrubber import Scrubber, ScrubConfigError

ENV_PREFIX = "OBSERVABILITY_SCRUB_"


class ScrubSettings(BaseSettings):
    """`OBSERVABILITY_SCRUB_IP` (default true), `OBSERVABILITY_SCRUB_EXTRA_PATTERNS` (JSON object
    kind -> regex, or JSON list of regexes), `OBSERVABILITY_SCRUB_ALLOW` (JSON list of regexes)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False)

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


def load_scrubber() -> Scrubber:
    """Build the scrubber from the environment; raises `ScrubConfigError` naming the bad variable."""
    try:
        settings = ScrubSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc'][:1]).upper()}: {err['msg']}"
            f" (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ScrubConfigError(problems) from None
    except SettingsError as exc:
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        raise ScrubConfigError(
            f"{ENV_PREFIX}{field.upper()}: not valid JSON (expected a JSON list or object):"
            f" {exc.__cause__ or exc}"
        ) from None
    return settings.build()
