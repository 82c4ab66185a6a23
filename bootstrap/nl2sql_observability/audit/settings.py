"""Audit log settings, from environment variables prefixed `OBSERVABILITY_AUDIT_`."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from nl2sql_observability.errors import ConfigurationError

ENV_PREFIX = "OBSERVABILITY_AUDIT_"


class AuditConfigError(ConfigurationError):
    """An audit setting is invalid; the message names the variable, the value and what is allowed."""


def default_dir() -> Path:
    """`$XDG_DATA_HOME/nl2sql-observability/audit` (`~/.local/share/...`): the same for the app and the
    CLI whatever their working directories."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "nl2sql-observability" / "audit"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_RETENTION_DAYS = 36500


def parse_retention(value: object) -> timedelta:
    """`30d`, `24h`, `90m`, `2w`, `3600s` or a number of seconds -> timedelta (1 s to 100 years)."""
    if isinstance(value, timedelta):
        return value
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError("expected a duration such as 30d, 24h, 90m, 2w or 3600s")
    seconds = float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]
    if not 1 <= seconds <= _MAX_RETENTION_DAYS * 86400:
        raise ValueError(f"expected a duration from 1s to {_MAX_RETENTION_DAYS}d")
    return timedelta(seconds=seconds)


class AuditSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    enabled: bool = Field(default=True, description="Capture LLM prompts/responses at all.")
    sink: Literal["file", "sqlite"] = Field(default="file", description="Where events go.")
    path: Path | None = Field(
        default=None, description="File (events.log) or database (events.db); default under default_dir()."
    )
    max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=0, description="Rotate the file above this size; 0: never."
    )
    backup_count: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="At most this many rotated files (events.log.1 … .N); default: as many as"
        " retention and the disk cap allow.",
    )
    retention: timedelta = Field(
        default=timedelta(days=30),
        description="Events older than this are deleted (30d, 24h, 90m, 2w, 3600s; both sinks).",
    )
    max_disk_bytes: int = Field(
        default=1024**3,
        ge=0,
        description="Disk cap for all files of the log; above it the oldest events are deleted early"
        " (logged and counted in nl2sql.audit.evicted_events). 0: no cap.",
    )
    text_max_chars: int = Field(default=16384, ge=64, description="Cap on each text field, after scrubbing.")
    fsync: bool = Field(default=False, description="fsync after every event (survives power loss; slower).")
    queue_size: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description="Events waiting for the background writer at most; a full queue makes the app's"
        " thread wait (up to QUEUE_TIMEOUT).",
    )
    queue_timeout: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="Seconds the app's thread waits at most for room in a full queue; past it the event"
        " is counted in nl2sql.audit.events{outcome=failed, error.type=queue_full} and logged.",
    )
    exit_timeout: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds the process waits at most, at exit or on SIGTERM, for the writer to store"
        " the queued events; what is left is counted as failed and logged.",
    )

    @field_validator("retention", mode="before")
    @classmethod
    def _parse_retention(cls, value: object) -> timedelta:
        return parse_retention(value)

    @model_validator(mode="after")
    def _cap_holds_a_file(self) -> AuditSettings:
        if self.max_disk_bytes and self.max_bytes and self.max_disk_bytes < 2 * self.max_bytes:
            raise ValueError(
                f"OBSERVABILITY_AUDIT_MAX_DISK_BYTES={self.max_disk_bytes} must be 0 (no cap) or at least"
                f" twice OBSERVABILITY_AUDIT_MAX_BYTES={self.max_bytes}"
            )
        return self

    def resolved_path(self) -> Path:
        if self.path is not None:
            return self.path.expanduser()
        return default_dir() / ("events.db" if self.sink == "sqlite" else "events.log")


def load_audit_settings() -> AuditSettings:
    """Read the settings; raises `AuditConfigError` naming the bad variable."""
    try:
        return AuditSettings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a check across settings: the message names them
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            field = str(err["loc"][0])
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{ENV_PREFIX}{field.upper()}={err.get('input')!r}: {msg}")
        raise AuditConfigError("; ".join(problems)) from None
    except SettingsError as exc:
        raise AuditConfigError(f"{ENV_PREFIX}*: {exc}") from None


def check_audit_path(settings: AuditSettings) -> None:
    """Refuse, at start-up, an audit path that the sink would refuse at the first LLM call (a symbolic
    link, not a regular file, a directory group or others may write to); raises `AuditConfigError`."""
    if not settings.enabled:
        return
    from nl2sql_observability.audit.sinks import audit_path_problem

    problem = audit_path_problem(settings.resolved_path())
    if problem is not None:
        raise AuditConfigError(f"{ENV_PREFIX}PATH: {problem}")
