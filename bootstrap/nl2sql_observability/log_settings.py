"""Logging settings, from environment variables prefixed `OBSERVABILITY_LOG_` (pydantic-settings).

- `OBSERVABILITY_LOG_FORMAT`: `auto` (JSON when the exporter is `otlp`, else text) | `json` | `text`.
- `OBSERVABILITY_LOG_LEVEL`: DEBUG, INFO (default), WARNING (or WARN), ERROR, CRITICAL.
- `OBSERVABILITY_LOG_STREAM`: `stdout` (default) | `stderr` | `none` | `file:PATH`.
Kept apart from `logs` so that `settings` can load it without importing the logging machinery.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import sys
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


class _ReportsFailuresOnce:
    """`handleError` of the console handlers: the stdlib prints "--- Logging error ---" and a
    traceback for every line that cannot be written (a full disk, a closed pipe); these say it once,
    in one line on stderr, and drop lines until one is written again. (`emit` runs under the
    handler's lock, so the two flags need no lock of their own.)"""

    _failing = False
    _failed_now = False

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        super().emit(record)  # type: ignore[misc]
        if not self._failed_now:
            self._failing = False  # written again: the next failure is reported anew

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed_now = True
        if self._failing:
            return
        self._failing = True
        error = sys.exc_info()[1]
        reason = getattr(error, "strerror", None) or error
        target = getattr(self, "baseFilename", None) or getattr(getattr(self, "stream", None), "name", "?")
        with contextlib.suppress(Exception):  # stderr may be the broken stream: nothing more to say
            sys.__stderr__.write(  # type: ignore[union-attr]
                f"nl2sql-observability: log lines cannot be written to {target} ({reason});"
                " they are dropped until writing works again\n"
            )
            sys.__stderr__.flush()  # type: ignore[union-attr]


class ConsoleHandler(_ReportsFailuresOnce, logging.StreamHandler):  # type: ignore[type-arg]
    """`logging.StreamHandler` that reports a stream it cannot write to once (see above)."""


class LogFileHandler(_ReportsFailuresOnce, logging.FileHandler):
    """`logging.FileHandler` that reports a file it cannot write to once (see above)."""


def open_log_file(stream: str) -> logging.FileHandler:
    """The handler of `file:PATH`, appending; the file is created owner-only (log lines may name
    tenants and users). Raises `LogSettingsError` when it cannot be opened."""
    path = stream[5:]
    try:
        # Non-blocking: a FIFO with no reader must be refused, not block start-up (ENXIO).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        try:
            mode = os.fstat(fd).st_mode
        finally:
            os.close(fd)
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise LogSettingsError(
                f"{ENV_STREAM}={stream!r}: a FIFO or socket would block the app whenever its reader"
                " stalls; give a regular file, or stdout/stderr"
            )
        return LogFileHandler(path, mode="a", encoding="utf-8")
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise LogSettingsError(
                f"{ENV_STREAM}={stream!r}: a FIFO with no reader; give a regular file, or stdout/stderr"
            ) from None
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
