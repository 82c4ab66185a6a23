"""The exporters' section of the settings: the distro's own variables, read from the environment
(pydantic-settings). `settings` composes it with the other sections into one tree.

- `OBSERVABILITY_EXPORTER`: `otlp` (default) | `console` | `none`.
- `OBSERVABILITY_ENVIRONMENT`: `deployment.environment.name`, default `local`.
- `OBSERVABILITY_EXPORT_TIMEOUT`: seconds, default 5, > 0 and <= 60; the OTLP export timeout when
  `OTEL_EXPORTER_OTLP[_<SIGNAL>]_TIMEOUT` is unset, and the batch processors' export timeout.
- `OBSERVABILITY_SHUTDOWN_TIMEOUT`: seconds, default 1.5, > 0 and <= 60; the most the process waits
  at exit to flush telemetry (an unreachable collector costs at most this).
- `OTEL_EXPORTER_OTLP_PROTOCOL` (and the `_TRACES_`/`_METRICS_`/`_LOGS_` variants):
  `http/protobuf` (default, the OTel spec default) | `grpc`.
- `OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`, `OTEL_LOGS_EXPORTER`: a comma-separated list of
  `otlp` and `console` (e.g. `console,otlp`), or `none` alone (as in the OTel spec); default: the
  value of `OBSERVABILITY_EXPORTER`.
- `OTEL_EXPORTER_OTLP_ENDPOINT` (and the `_TRACES_`/`_METRICS_`/`_LOGS_` variants): checked only, the
  exporters read them themselves. An `http://` or `https://` URL with a host (and a valid port); with
  the `grpc` protocol `host:port` is accepted too, as the gRPC exporter takes it.

Why `otlp` is the default: the distro is loaded by `opentelemetry-instrument`, whose users expect
telemetry to leave the process (the OTel default for `OTEL_*_EXPORTER` is `otlp` too), and a missing
collector costs the app nothing (bounded timeouts, background export, nothing raised).
Empty values count as unset (as in the OTel spec). Values are case-insensitive.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nl2sql_observability import semconv as sc
from nl2sql_observability.errors import ConfigurationError
from nl2sql_observability.safetext import redact_url, redact_urls_in

__all__ = ["CONFIG_ERROR_PREFIX", "ObservabilitySettings", "env_name", "load_settings"]

ExporterName = Literal["otlp", "console", "none"]
Protocol = Literal["grpc", "http/protobuf"]
Signal = Literal["traces", "metrics", "logs"]
# `OTEL_<SIGNAL>_EXPORTER` is a list; NoDecode: comma-separated, not the JSON pydantic-settings expects.
ExporterList = Annotated[tuple[ExporterName, ...] | None, NoDecode]
_LIST_HINT = " (a comma-separated list, or none alone)"
_ENDPOINT_HINT = (
    "an http:// or https:// URL with a host, e.g. http://localhost:4318 (host:port also with grpc)"
)


CONFIG_ERROR_PREFIX = "invalid observability configuration: "


class ObservabilitySettings(BaseSettings):
    """Everything the configurator needs; every field has one documented default."""

    model_config = SettingsConfigDict(
        env_prefix="OBSERVABILITY_", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    exporter: ExporterName = "otlp"
    environment: str = Field(default=sc.DEFAULT_ENVIRONMENT, min_length=1, max_length=255)
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
    traces_exporter: ExporterList = Field(default=None, validation_alias=AliasChoices("OTEL_TRACES_EXPORTER"))
    metrics_exporter: ExporterList = Field(
        default=None, validation_alias=AliasChoices("OTEL_METRICS_EXPORTER")
    )
    logs_exporter: ExporterList = Field(default=None, validation_alias=AliasChoices("OTEL_LOGS_EXPORTER"))
    otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    traces_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    metrics_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    )
    logs_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
    )

    @field_validator(
        "exporter",
        "otlp_protocol",
        "traces_protocol",
        "metrics_protocol",
        "logs_protocol",
        mode="before",
    )
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower()
        return value

    @field_validator("traces_exporter", "metrics_exporter", "logs_exporter", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        names = [name.strip().lower() for name in value.split(",")]
        if not set(names) <= set(typing.get_args(ExporterName)) or ("none" in names and len(names) > 1):
            raise ValueError("not a list of exporters")
        return tuple(dict.fromkeys(names))  # a name given twice exports once

    @model_validator(mode="after")
    def _check_endpoints(self) -> ObservabilitySettings:
        every: tuple[Signal, ...] = ("traces", "metrics", "logs")
        for signal in (*every, None):
            field = f"{signal or 'otlp'}_endpoint"
            value = getattr(self, field)
            used = every if signal is None else (signal,)
            grpc = any(self.protocol_for(s) == "grpc" for s in used)
            if value is not None and not _valid_endpoint(value, grpc_form=grpc):
                shown = redact_url(value)  # never echo a password given in the URL
                raise ValueError(
                    f"{env_name(field)}={shown!r} is not allowed; allowed values: {_ENDPOINT_HINT}"
                )
        return self

    def exporters_for(self, signal: Signal) -> tuple[ExporterName, ...]:
        """`OTEL_<SIGNAL>_EXPORTER` if set, else `OBSERVABILITY_EXPORTER`; `()` for `none`."""
        explicit: tuple[ExporterName, ...] | None = getattr(self, f"{signal}_exporter")
        names = explicit if explicit is not None else (self.exporter,)
        return tuple(name for name in names if name != "none")

    def protocol_for(self, signal: Signal) -> Protocol:
        explicit: Protocol | None = getattr(self, f"{signal}_protocol")
        return explicit if explicit is not None else self.otlp_protocol


def env_name(field: str) -> str:
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
    if args and all(isinstance(a, str) or a is Ellipsis for a in args):
        return ", ".join(str(a) for a in args if a is not Ellipsis) + (_LIST_HINT if Ellipsis in args else "")
    if field.endswith("_endpoint"):
        return _ENDPOINT_HINT
    if field in ("export_timeout", "shutdown_timeout"):
        return "a number of seconds > 0 and <= 60"
    return "a non-empty string of at most 255 characters"


def _valid_endpoint(value: str, *, grpc_form: bool) -> bool:
    """An http(s) URL with a host and a valid port; `host:port` too where gRPC may be the protocol."""
    text = value.strip()
    bare = grpc_form and "://" not in text
    try:
        parts = urlsplit("http://" + text if bare else text)
        port = parts.port  # raises ValueError on a port that is not a number in 0-65535
    except ValueError:
        return False
    if bare and port is None:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and (port is None or port > 0)


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
        by_env = {env_name(f).upper(): f for f in ObservabilitySettings.model_fields}
        for err in exc.errors():
            loc = str(err["loc"][0]) if err["loc"] else ""
            field = loc if loc in ObservabilitySettings.model_fields else by_env.get(loc.upper(), "")
            if not field:  # a model-level check (the endpoints): its message is complete
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            name = env_name(field)
            problems.append(f"{name}={err.get('input')!r} is not allowed; allowed values: {_allowed(field)}")
        raise ConfigurationError(redact_urls_in(CONFIG_ERROR_PREFIX + "; ".join(problems))) from None


def _from_mapping(values: Mapping[str, str]) -> ObservabilitySettings:
    """Build settings from exactly this mapping (never the process environment, never a .env file)."""
    data: dict[str, str] = {}
    upper = {k.upper(): v for k, v in values.items()}
    for field in ObservabilitySettings.model_fields:
        name = env_name(field)
        if name in upper:
            data[field if name.startswith("OBSERVABILITY_") else name] = upper[name]
    return ObservabilitySettings.model_validate(data)
