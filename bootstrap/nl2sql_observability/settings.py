"""Every setting of the package in one tree, read once (`load_all`) and handed to each section's owner
(`use_settings`): the exporters (`exporter_settings`), logging, the scrubber, the audit log, the
zero-code instrumentor and the LLM price table. Each section's module defines its own model and error
(a `ConfigurationError`, from the bottom module `errors`); none of them imports this one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from nl2sql_observability.errors import ConfigurationError
from nl2sql_observability.exporter_settings import (
    CONFIG_ERROR_PREFIX,
    ObservabilitySettings,
    env_name,
    load_settings,
)

if TYPE_CHECKING:
    from nl2sql_observability.audit.settings import AuditSettings
    from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
    from nl2sql_observability.feedback import FeedbackSettings
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

_T = TypeVar("_T")
_PREFIX = CONFIG_ERROR_PREFIX


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
    feedback: FeedbackSettings


def load_all() -> Settings:
    """Read and check every setting of the package from the environment: `OBSERVABILITY_*` and
    `OTEL_EXPORTER_OTLP_*` of the distro, `OBSERVABILITY_LOG_*`, `OBSERVABILITY_SCRUB_*`,
    `OBSERVABILITY_AUDIT_*`, the instrumentor's and `OBSERVABILITY_PRICES_FILE`.
    Raises one `ConfigurationError` that lists each bad variable."""
    # Imported here: each section's module imports `ConfigurationError` from this one.
    import os

    from nl2sql_observability.audit.settings import check_audit_path, load_audit_settings
    from nl2sql_observability.autoinstrument.settings import load_instrumentor_settings
    from nl2sql_observability.feedback import load_feedback_settings
    from nl2sql_observability.log_settings import load_log_settings
    from nl2sql_observability.pricing import load_price_table
    from nl2sql_observability.safetext import deep_json_problem, redact_urls_in
    from nl2sql_observability.scrubbing.settings import load_scrub_settings

    deep = deep_json_problem("OBSERVABILITY_", os.environ)  # json.loads would raise RecursionError
    if deep:
        raise ConfigurationError(_PREFIX + deep)
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
    if audit is not None:
        checked = audit
        section(lambda: check_audit_path(checked))
    instrumentor = section(load_instrumentor_settings)
    pricing = section(load_price_table)
    feedback = section(load_feedback_settings)
    if (
        problems
        or exporter is None
        or logging is None
        or scrub is None
        or scrubber is None
        or audit is None
        or instrumentor is None
        or pricing is None
        or feedback is None
    ):
        raise ConfigurationError(redact_urls_in(_PREFIX + "; ".join(dict.fromkeys(problems))))
    audit = audit.model_copy(update={"path": audit.resolved_path()})  # XDG_DATA_HOME read now, once
    return Settings(exporter, logging, scrub, scrubber, audit, instrumentor, pricing, feedback)


_current: Settings | None = None


def current_settings() -> Settings | None:
    """The settings `configure()` (or the distro) loaded; None when neither ran (library use)."""
    return _current


def use_settings(settings: Settings | None) -> None:
    """Make `settings` the process's settings and hand each section to its owner, once: the scrubber,
    the audit log, the price table, logging and the instrumentor's settings (the exporters' section
    is `configure()`'s); none of them reads the environment after this. None: each goes back to
    reading the environment on first use (library use, tests)."""
    global _current
    from nl2sql_observability.audit import AuditLog, set_audit_log
    from nl2sql_observability.autoinstrument import use_instrumentor_settings
    from nl2sql_observability.feedback import use_feedback_settings
    from nl2sql_observability.logs import use_log_settings
    from nl2sql_observability.pricing import use_price_table
    from nl2sql_observability.scrubbing import set_scrubber

    _current = settings
    if settings is None:
        set_scrubber(None)
        set_audit_log(None)
        use_price_table(None)
        use_instrumentor_settings(None)
        use_log_settings(None, None)
        use_feedback_settings(None)
        return
    set_scrubber(settings.scrubber)  # first: the audit writer scrubs with it
    use_price_table(settings.pricing)
    use_instrumentor_settings(settings.instrumentor)
    use_log_settings(settings.logging, settings.exporter)
    use_feedback_settings(settings.feedback)
    set_audit_log(AuditLog(settings.audit))


def setting_names() -> list[str]:
    """Every environment variable `load_all` reads, from the models' prefixes and aliases."""
    from nl2sql_observability.audit.settings import AuditSettings
    from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
    from nl2sql_observability.feedback import FeedbackSettings
    from nl2sql_observability.log_settings import LogSettings
    from nl2sql_observability.pricing import PRICES_FILE_ENV
    from nl2sql_observability.scrubbing.settings import ScrubSettings

    names = [env_name(field) for field in ObservabilitySettings.model_fields]
    for model in (LogSettings, ScrubSettings, AuditSettings, InstrumentorSettings, FeedbackSettings):
        prefix = str(model.model_config.get("env_prefix", ""))
        names += [f"{prefix}{field}".upper() for field in model.model_fields]
    return [*names, PRICES_FILE_ENV]
