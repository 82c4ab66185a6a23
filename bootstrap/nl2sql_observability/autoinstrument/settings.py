"""Settings of the zero-code instrumentor: `OBSERVABILITY_CONTEXT_*_KEY`, `OBSERVABILITY_VALIDATOR_NODES`."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from nl2sql_observability.errors import ConfigurationError
from nl2sql_observability.safetext import loads_bounded

__all__ = ["InstrumentorConfigError", "InstrumentorSettings", "load_instrumentor_settings"]

ENV_PREFIX = "OBSERVABILITY_"
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")
_DEFAULT_VALIDATORS = ("validate_sql", "validate_query", "check_sql", "check_query")


class InstrumentorConfigError(ConfigurationError):
    """A setting of the instrumentor is invalid; the message names the variable, value and what is allowed."""


class InstrumentorSettings(BaseSettings):
    """Which run-config keys carry tenant, user and session, and which graph nodes validate SQL."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    context_tenant_key: str = Field(default="tenant_id", description="config key of `tenant.id`")
    context_user_key: str = Field(default="user_id", description="config key of `user.id`")
    context_session_key: str = Field(default="thread_id", description="config key of `session.id`")
    validator_nodes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=_DEFAULT_VALIDATORS, description="graph nodes whose outcome counts as a SQL validation"
    )
    sql_evaluators: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("sql_parses", "sql_read_only"),
        description="built-in evaluators of each request's SQL (comma-separated; `none`: off)",
    )
    outcome_state_key: str = Field(
        default="nl2sql_outcome", description="graph state key in which an app names its own `nl2sql.outcome`"
    )
    gc_freeze: bool = Field(
        default=False,
        description="at the first graph run, move every object alive to the garbage collector's"
        " permanent generation (gc.freeze()), so full collections scan only what came after; process-wide,"
        " so opt-in",
    )

    @field_validator("context_tenant_key", "context_user_key", "context_session_key", "outcome_state_key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        value = value.strip()
        if not _NAME_RE.match(value):
            raise ValueError("allowed: 1-128 characters of letters, digits, '_', '.', ':', '-'")
        return value

    @field_validator("sql_evaluators", mode="before")
    @classmethod
    def _evaluator_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = (
                [] if value.strip().lower() == "none" else [v.strip() for v in value.split(",") if v.strip()]
            )
        allowed = ("sql_parses", "sql_read_only")
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"evaluator {bad[0]!r} is not built in; allowed: {', '.join(allowed)} or none")
        return tuple(value)

    @field_validator("validator_nodes", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            names = loads_bounded(text) if text.startswith("[") else text.split(",")
            value = names
        if isinstance(value, list | tuple):
            names = tuple(str(n).strip() for n in value if str(n).strip())
            bad = [n for n in names if not _NAME_RE.match(n)]
            if bad:
                raise ValueError(
                    f"node name {bad[0]!r} is not allowed; allowed: a comma-separated list (or JSON list) "
                    "of names of 1-128 letters, digits, '_', '.', ':', '-'"
                )
            return names
        return value


def load_instrumentor_settings() -> InstrumentorSettings:
    """Read the settings; raises `InstrumentorConfigError` naming the bad variable."""
    try:
        return InstrumentorSettings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}={err.get('input')!r}: {err['msg']}")
        raise InstrumentorConfigError("; ".join(problems)) from None
    except (SettingsError, json.JSONDecodeError) as exc:
        raise InstrumentorConfigError(f"{ENV_PREFIX}VALIDATOR_NODES: {exc}") from None
