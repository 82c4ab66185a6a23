"""Logging settings, from environment variables prefixed `OBSERVABILITY_LOG_` (pydantic-settings).

- `OBSERVABILITY_LOG_FORMAT`: `auto` (JSON when the exporter is `otlp`, else text) | `json` | `text`.
- `OBSERVABILITY_LOG_LEVEL`: DEBUG, INFO (default), WARNING (or WARN), ERROR, CRITICAL.
- `OBSERVABILITY_LOG_STREAM`: `stdout` (default) | `stderr` | `none` | `file:PATH`.
Kept apart from `logs` so that `settings` can load it without importing the logging machinery.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nl2sql_observability.errors import ConfigurationError

__all__ = ["ENV_PREFIX", "LogSettings", "LogSettingsError", "load_log_settings", "parse_level"]

ENV_PREFIX = "OBSERVABILITY_LOG_"
ENV_FORMAT = f"{ENV_PREFIX}FORMAT"
ENV_LEVEL = f"{ENV_PREFIX}LEVEL"
ENV_STREAM = f"{ENV_PREFIX}STREAM"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LogSettingsError(ConfigurationError):
    """A logging setting is invalid; the message names the variable, the value and the choices."""


def parse_level(level: str, source: str) -> str:
    """The canonical level name of `level` (`WARN` -> `WARNING`); `source` names it in the error."""
    name = level.upper()
    if name == "WARN":
        name = "WARNING"
    if name not in _LEVELS:
        raise LogSettingsError(f"{source}={level!r} is not valid; allowed: {', '.join(_LEVELS)}")
    return name


class LogSettings(BaseSettings):
    """Format, level and console stream of the log lines."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    format: str = "auto"
    level: str = "INFO"
    stream: str = "stdout"

    @field_validator("format", mode="before")
    @classmethod
    def _check_format(cls, value: Any) -> str:
        text = str(value).strip().lower() or "auto"
        if text not in ("auto", "json", "text"):
            raise ValueError(f"{ENV_FORMAT}={text!r} is not valid; allowed: auto, json, text")
        return text

    @field_validator("level", mode="before")
    @classmethod
    def _check_level(cls, value: Any) -> str:
        try:
            return parse_level(str(value).strip() or "INFO", ENV_LEVEL)
        except LogSettingsError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("stream", mode="before")
    @classmethod
    def _check_stream(cls, value: Any) -> str:
        raw = str(value).strip() or "stdout"
        lowered = raw.lower()
        if lowered in ("stdout", "stderr", "none"):
            return lowered
        if lowered.startswith("file:") and raw[5:]:
            return "file:" + raw[5:]
        raise ValueError(f"{ENV_STREAM}={raw!r} is not valid; allowed: stdout, stderr, none, file:PATH")

    @property
    def level_number(self) -> int:
        return int(logging.getLevelName(self.level))


def open_log_file(stream: str) -> logging.FileHandler:
    """The handler of `file:PATH`, appending; the file is created owner-only (log lines may name
    tenants and users). Raises `LogSettingsError` when it cannot be opened."""
    path = stream[5:]
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        return logging.FileHandler(path, mode="a", encoding="utf-8")
    except OSError as exc:
        raise LogSettingsError(f"{ENV_STREAM}={stream!r}: cannot open the file: {exc.strerror}") from None


def load_log_settings() -> LogSettings:
    """Read and check the `OBSERVABILITY_LOG_*` variables (a `file:PATH` stream is opened once to
    prove it can be); raises `LogSettingsError` naming each bad variable."""
    try:
        settings = LogSettings()
    except ValidationError as exc:
        problems = [str(err["msg"]).removeprefix("Value error, ") for err in exc.errors()]
        raise LogSettingsError("; ".join(problems)) from None
    if settings.stream.startswith("file:"):
        open_log_file(settings.stream).close()
    return settings
