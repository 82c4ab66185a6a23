"""Settings of the distro, read from the environment (pydantic-settings).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nl2sql_observability import semconv as sc

if TYPE_CHECKING:
    from nl2sql_observability.audit.settings import AuditSettings
    from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
    from nl2sql_observability.log_settings import LogSettings
    from nl2sql_observability.pricing import PriceTable
    from nl2sql_observability.scrubbing import Scrubber
    from nl2sql_observability.scrubbing.settings import ScrubSettings

__all__ = [
    "ConfigurationError",
    "ObservabilitySettings",
    "Settings",
    "current_settings",
    "load_all",
    "load_settings",
    "setting_names",
    "use_settings",
]

ExporterName = Literal["otlp", "console", "none"]
Protocol = Literal["grpc", "http/protobuf"]
Signal = Literal["traces", "metrics", "logs"]
# `OTEL_<SIGNAL>_EXPORTER` is a list; NoDecode: comma-separated, not the JSON pydantic-settings expects.
ExporterList = Annotated[tuple[ExporterName, ...] | None, NoDecode]
_LIST_HINT = " (a comma-separated list, or none alone)"
_ENDPOINT_HINT = (
    "an http:// or https:// URL with a host, e.g. http://localhost:4318 (host:port also with grpc)"
)


_PREFIX = "invalid observability configuration: "
_T = TypeVar("_T")


class ConfigurationError(ValueError):
    """A setting has a bad value. The message names the variable, the value and the allowed values.
    The one error type of every setting: each section's error (logging, scrubber, audit log,
    instrumentor, price table) is a subclass."""


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
                raise ValueError(
                    f"{_env_name(field)}={value!r} is not allowed; allowed values: {_ENDPOINT_HINT}"
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
        by_env = {_env_name(f).upper(): f for f in ObservabilitySettings.model_fields}
        for err in exc.errors():
            loc = str(err["loc"][0]) if err["loc"] else ""
            field = loc if loc in ObservabilitySettings.model_fields else by_env.get(loc.upper(), "")
            if not field:  # a model-level check (the endpoints): its message is complete
                problems.append(str(err["msg"]).removeprefix("Value error, "))
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


@dataclass(frozen=True)
class Settings:
    """Every setting of the package, read once (`load_all`): the distro's exporter settings, logging,
    the scrubber (with the scrubber built from it, its patterns compiled and probed once), the audit
    log (its path resolved), the zero-code instrumentor and the LLM price table."""

    exporter: ObservabilitySettings
    logging: LogSettings
    scrub: ScrubSettings
    scrubber: Scrubber
    audit: AuditSettings
    instrumentor: InstrumentorSettings
    pricing: PriceTable


def load_all() -> Settings:
    """Read and check every setting of the package from the environment: `OBSERVABILITY_*` and
    `OTEL_EXPORTER_OTLP_*` of the distro, `OBSERVABILITY_LOG_*`, `OBSERVABILITY_SCRUB_*`,
    `OBSERVABILITY_AUDIT_*`, the instrumentor's and `OBSERVABILITY_PRICES_FILE`.
    Raises one `ConfigurationError` that lists each bad variable."""
    # Imported here: each section's module imports `ConfigurationError` from this one.
    from nl2sql_observability.audit.settings import load_audit_settings
    from nl2sql_observability.autoinstrument.settings import load_instrumentor_settings
    from nl2sql_observability.log_settings import load_log_settings
    from nl2sql_observability.pricing import load_price_table
    from nl2sql_observability.scrubbing.settings import load_scrub_settings

    problems: list[str] = []

    def section(load: Callable[[], _T]) -> _T | None:
        try:
            return load()
        except ConfigurationError as exc:
            problems.append(str(exc).removeprefix(_PREFIX))
            return None

    exporter = section(load_settings)
    logging = section(load_log_settings)
    scrub = section(load_scrub_settings)
    scrubber = section(scrub.build) if scrub is not None else None
    audit = section(load_audit_settings)
    instrumentor = section(load_instrumentor_settings)
    pricing = section(load_price_table)
    if (
        problems
        or exporter is None
        or logging is None
        or scrub is None
        or scrubber is None
        or audit is None
        or instrumentor is None
        or pricing is None
    ):
        raise ConfigurationError(_PREFIX + "; ".join(dict.fromkeys(problems)))
    audit = audit.model_copy(update={"path": audit.resolved_path()})  # XDG_DATA_HOME read now, once
    return Settings(exporter, logging, scrub, scrubber, audit, instrumentor, pricing)


_current: Settings | None = None


def current_settings() -> Settings | None:
    """The settings `configure()` (or the distro) loaded; None when neither ran (library use)."""
    return _current


def use_settings(settings: Settings | None) -> None:
    """Make `settings` the process's settings: the scrubber, the audit log, the price table, logging
    and the instrumentor take their section from it from now on and never read the environment.
    None: back to reading the environment on first use."""
    global _current
    from nl2sql_observability.audit import set_audit_log
    from nl2sql_observability.pricing import use_price_table
    from nl2sql_observability.scrubbing import set_scrubber

    _current = settings
    set_scrubber(None)  # the singletons are rebuilt from the new settings on their next use
    set_audit_log(None)
    use_price_table(None)


def setting_names() -> list[str]:
    """Every environment variable `load_all` reads, from the models' prefixes and aliases."""
    from nl2sql_observability.audit.settings import AuditSettings
    from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
    from nl2sql_observability.log_settings import LogSettings
    from nl2sql_observability.pricing import PRICES_FILE_ENV
    from nl2sql_observability.scrubbing.settings import ScrubSettings

    names = [_env_name(field) for field in ObservabilitySettings.model_fields]
    for model in (LogSettings, ScrubSettings, AuditSettings, InstrumentorSettings):
        prefix = str(model.model_config.get("env_prefix", ""))
        names += [f"{prefix}{field}".upper() for field in model.model_fields]
    return [*names, PRICES_FILE_ENV]
