"""Audit log settings, from environment variables prefixed `OBSERVABILITY_AUDIT_`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

ENV_PREFIX = "OBSERVABILITY_AUDIT_"


class AuditConfigError(ValueError):
    """An audit setting is invalid; the message names the variable, the value and what is allowed."""


def default_dir() -> Path:
    """`$XDG_DATA_HOME/nl2sql-observability/audit` (`~/.local/share/...`): the same for the app and the
    CLI whatever their working directories."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "nl2sql-observability" / "audit"


class AuditSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False)

    enabled: bool = Field(default=True, description="Capture LLM prompts/responses at all.")
    sink: Literal["file", "sqlite"] = Field(default="file", description="Where events go.")
    path: Path | None = Field(
        default=None, description="File (events.log) or database (events.db); default under default_dir()."
    )
    max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=0, description="Rotate the file above this size; 0: never."
    )
    backup_count: int = Field(default=5, ge=1, le=1000, description="Rotated files kept: events.log.1 … .N.")
    text_max_chars: int = Field(default=16384, ge=64, description="Cap on each text field, after scrubbing.")
    fsync: bool = Field(default=False, description="fsync after every event (survives power loss; slower).")

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
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}={err.get('input')!r}: {err['msg']}")
        raise AuditConfigError("; ".join(problems)) from None
    except SettingsError as exc:
        raise AuditConfigError(f"{ENV_PREFIX}*: {exc}") from None
