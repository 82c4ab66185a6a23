"""Settings of the distro, read from the environment (pydantic-settings).

- `OBSERVABILITY_EXPORTER`: `otlp` (default) | `console` | `none`.
- `OBSERVABILITY_ENVIRONMENT`: `deployment.environment.name`, default `local`.
- `OBSERVABILITY_EXPORT_TIMEOUT`: seconds, default 5, > 0 and <= 60; the OTLP export timeout when
  `OTEL_EXPORTER_OTLP[_<SIGNAL>]_TIMEOUT` is unset, and the batch processors' export timeout.
- `OBSERVABILITY_SHUTDOWN_TIMEOUT`: seconds, default 1.5, > 0 and <= 60; the most the process waits
  at exit to flush telemetry (an unreachable collector costs at most this).
- `OTEL_EXPORTER_OTLP_PROTOCOL` (and the `_TRACES_`/`_METRICS_`/`_LOGS_` variants):
  `http/protobuf` (default, the OTel spec default) | `grpc`.
- `OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`, `OTEL_LOGS_EXPORTER`: `otlp` | `console` | `none`;
  default: the value of `OBSERVABILITY_EXPORTER`.

Why `otlp` is the default: the distro is loaded by `opentelemetry-instrument`, whose users expect
telemetry to leave the process (the OTel default for `OTEL_*_EXPORTER` is `otlp` too), and a missing
collector costs the app nothing (bounded timeouts, background export, nothing raised).
Empty values count as unset (as in the OTel spec). Values are case-insensitive.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ConfigurationError", "ObservabilitySettings", "check_all_settings", "load_settings"]

ExporterName = Literal["otlp", "console", "none"]
Protocol = Literal["grpc", "http/protobuf"]


_PREFIX = "invalid observability configuration: "


class ConfigurationError(ValueError):
    """A setting has a bad value. The message names the variable, the value and the allowed values."""


class ObservabilitySettings(BaseSettings):
    """Everything the configurator needs; every field has one documented default."""

    model_config = SettingsConfigDict(
        env_prefix="OBSERVABILITY_", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    exporter: ExporterName = "otlp"
    environment: str = Field(default="local", min_length=1, max_length=255)
    export_timeout: float = Field(default=5.0, gt=0, le=60)
    shutdown_timeout: float = Field(default=1.5, gt=0, le=60)
    otlp_protocol: Protocol = Field(
        default="http/protobuf", validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_PROTOCOL")
    )
    traces_protocol: Protocol | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    )
    metrics_protocol: Protocol | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
    )
    logs_protocol: Protocol | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL")
    )
    traces_exporter: ExporterName | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_TRACES_EXPORTER")
    )
    metrics_exporter: ExporterName | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_METRICS_EXPORTER")
    )
    logs_exporter: ExporterName | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_LOGS_EXPORTER")
    )

    @field_validator(
        "exporter",
        "otlp_protocol",
        "traces_protocol",
        "metrics_protocol",
        "logs_protocol",
        "traces_exporter",
        "metrics_exporter",
        "logs_exporter",
        mode="before",
    )
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower()
        return value

    def exporter_for(self, signal: Literal["traces", "metrics", "logs"]) -> ExporterName:
        """`OTEL_<SIGNAL>_EXPORTER` if set, else `OBSERVABILITY_EXPORTER`."""
        explicit: ExporterName | None = getattr(self, f"{signal}_exporter")
        return explicit if explicit is not None else self.exporter

    def protocol_for(self, signal: Literal["traces", "metrics", "logs"]) -> Protocol:
        explicit: Protocol | None = getattr(self, f"{signal}_protocol")
        return explicit if explicit is not None else self.otlp_protocol


def _env_name(field: str) -> str:
    info = ObservabilitySettings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        if isinstance(first, str):
            return first
    return f"OBSERVABILITY_{field.upper()}"


def _allowed(field: str) -> str:
    info = ObservabilitySettings.model_fields[field]
    args = [a for a in _flatten(info.annotation) if a is not type(None)]
    if args and all(isinstance(a, str) for a in args):
        return ", ".join(str(a) for a in args)
    if field in ("export_timeout", "shutdown_timeout"):
        return "a number of seconds > 0 and <= 60"
    return "a non-empty string of at most 255 characters"


def _flatten(annotation: Any) -> list[Any]:
    out: list[Any] = []
    for arg in typing.get_args(annotation) or ([annotation] if annotation is not None else []):
        if typing.get_args(arg):
            out.extend(_flatten(arg))
        else:
            out.append(arg)
    return out


def load_settings(environ: Mapping[str, str] | None = None) -> ObservabilitySettings:
    """Read and validate the settings; raise `ConfigurationError` with one message on a bad value."""
    try:
        if environ is None:
            return ObservabilitySettings()
        return _from_mapping({k: v for k, v in environ.items() if v.strip() != ""})
    except ValidationError as exc:
        problems = []
        by_env = {_env_name(f).upper(): f for f in ObservabilitySettings.model_fields}
        for err in exc.errors():
            loc = str(err["loc"][0]) if err["loc"] else ""
            field = loc if loc in ObservabilitySettings.model_fields else by_env.get(loc.upper(), "")
            if not field:
                problems.append(err["msg"])
                continue
            name = _env_name(field)
            problems.append(f"{name}={err.get('input')!r} is not allowed; allowed values: {_allowed(field)}")
        raise ConfigurationError(_PREFIX + "; ".join(problems)) from None


def _from_mapping(values: Mapping[str, str]) -> ObservabilitySettings:
    """Build settings from exactly this mapping (never the process environment, never a .env file)."""
    data: dict[str, str] = {}
    upper = {k.upper(): v for k, v in values.items()}
    for field in ObservabilitySettings.model_fields:
        name = _env_name(field)
        if name in upper:
            data[field if name.startswith("OBSERVABILITY_") else name] = upper[name]
    return ObservabilitySettings.model_validate(data)


def check_all_settings() -> ObservabilitySettings:
    """Validate every setting of the package at start-up: the distro's, logging's
    (`OBSERVABILITY_LOG_*`), the scrubber's (`OBSERVABILITY_SCRUB_*`), the audit log's
    (`OBSERVABILITY_AUDIT_*`) and the price table (`OBSERVABILITY_PRICES_FILE`).
    Raises one `ConfigurationError` that lists each bad variable."""
    from nl2sql_observability.audit.settings import AuditConfigError, load_audit_settings
    from nl2sql_observability.autoinstrument.settings import (
        InstrumentorConfigError,
        load_instrumentor_settings,
    )
    from nl2sql_observability.logs import LogSettingsError, check_log_settings
    from nl2sql_observability.pricing import PriceTableError, check_prices_file
    from nl2sql_observability.scrubbing import ScrubConfigError, load_scrubber

    problems: list[str] = []
    settings: ObservabilitySettings | None = None
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        problems.append(str(exc).removeprefix(_PREFIX))
    for check in (
        check_log_settings,
        load_scrubber,
        load_audit_settings,
        load_instrumentor_settings,
        check_prices_file,
    ):
        try:
            check()
        except (
            ConfigurationError,
            LogSettingsError,
            ScrubConfigError,
            AuditConfigError,
            InstrumentorConfigError,
            PriceTableError,
        ) as exc:
            problems.append(str(exc).removeprefix(_PREFIX))
    if problems or settings is None:
        raise ConfigurationError(_PREFIX + "; ".join(dict.fromkeys(problems)))
    return settings
