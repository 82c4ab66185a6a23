"""Names from the telemetry contract (docs/telemetry-contract.md): dashboards, rules and alerts use these."""

# ruff: noqa: S105 - "token" here means LLM tokens, not secrets

from __future__ import annotations

from typing import Final

# Instrumentation scope
SCOPE_NAME: Final = "nl2sql_observability"

# Distro identity (resource attributes telemetry.distro.*)
DISTRO_NAME: Final = "nl2sql-observability"

# Resource
SERVICE_NAME: Final = "service.name"
DEPLOYMENT_ENVIRONMENT_NAME: Final = "deployment.environment.name"
TELEMETRY_DISTRO_NAME: Final = "telemetry.distro.name"
TELEMETRY_DISTRO_VERSION: Final = "telemetry.distro.version"
DEFAULT_SERVICE_NAME: Final = "nl2sql"
DEFAULT_ENVIRONMENT: Final = "local"

# Context (baggage keys copied onto every span; only tenant.id ever goes on metrics)
TENANT_ID: Final = "tenant.id"
USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"
BAGGAGE_ALLOW_LIST: Final = frozenset({TENANT_ID, USER_ID, SESSION_ID})
TENANT_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]{0,63}$"

# Span and metric attributes
ERROR_TYPE: Final = "error.type"
NODE_NAME: Final = "nl2sql.node.name"
AUDIT_SINK: Final = "nl2sql.audit.sink"
AUDIT_OUTCOME: Final = "nl2sql.audit.outcome"
VALIDATION_OUTCOME: Final = "nl2sql.validation.outcome"
OUTCOME: Final = "nl2sql.outcome"
CORRECTION_ATTEMPTS: Final = "nl2sql.correction_attempts"
EVALUATION_NEGATIVE: Final = "nl2sql.evaluation.negative"
DB_RESPONSE_STATUS_CODE: Final = "db.response.status_code"
DB_RESPONSE_RETURNED_ROWS: Final = "db.response.returned_rows"
# GenAI evaluation event (OpenTelemetry GenAI semantic conventions).
GEN_AI_EVALUATION_RESULT: Final = "gen_ai.evaluation.result"
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
# Proposed for the GenAI conventions (Development status): the cost of one call, and its currency.
GEN_AI_USAGE_COST_AMOUNT: Final = "gen_ai.usage.cost.amount"
GEN_AI_USAGE_COST_CURRENCY: Final = "gen_ai.usage.cost.currency"

OPERATION_INVOKE_WORKFLOW: Final = "invoke_workflow"
OPERATION_CHAT: Final = "chat"
DEFAULT_WORKFLOW_NAME: Final = "nl2sql"

# Span names
WORKFLOW_SPAN_PREFIX: Final = "invoke_workflow "
NODE_SPAN_PREFIX: Final = "node "
CHAT_SPAN_PREFIX: Final = "chat "

# Metrics: name, unit
NODE_DURATION: Final = "nl2sql.node.duration"
REQUEST_DURATION: Final = "nl2sql.request.duration"
SQL_VALIDATIONS: Final = "nl2sql.sql.validations"
LLM_TOKENS: Final = "nl2sql.llm.tokens"
LLM_COST: Final = "nl2sql.llm.cost"
LLM_UNPRICED_TOKENS: Final = "nl2sql.llm.unpriced_tokens"
AUDIT_EVICTED_EVENTS: Final = "nl2sql.audit.evicted_events"
AUDIT_EVENTS: Final = "nl2sql.audit.events"
REQUESTS: Final = "nl2sql.requests"
EVALUATIONS: Final = "nl2sql.evaluations"
GEN_AI_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
GEN_AI_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
UNIT_SECONDS: Final = "s"
UNIT_VALIDATION: Final = "{validation}"
UNIT_TOKEN: Final = "{token}"
UNIT_USD: Final = "{USD}"
UNIT_EVENT: Final = "{event}"
UNIT_REQUEST: Final = "{request}"
UNIT_EVALUATION: Final = "{evaluation}"

# nl2sql.outcome: the closed set (docs/telemetry-contract.md, "Outcome").
OUTCOME_ANSWERED: Final = "answered"
OUTCOME_EMPTY_RESULT: Final = "empty_result"
OUTCOME_VALIDATION_REJECTED: Final = "validation_rejected"
OUTCOME_SQL_ERROR: Final = "sql_error"
OUTCOME_TIMEOUT: Final = "timeout"
OUTCOME_LLM_ERROR: Final = "llm_error"
OUTCOME_ERROR: Final = "error"
OUTCOMES: Final = (
    OUTCOME_ANSWERED,
    OUTCOME_EMPTY_RESULT,
    OUTCOME_VALIDATION_REJECTED,
    OUTCOME_SQL_ERROR,
    OUTCOME_TIMEOUT,
    OUTCOME_LLM_ERROR,
    OUTCOME_ERROR,
)
ERROR_OUTCOMES: Final = frozenset(OUTCOMES) - {OUTCOME_ANSWERED, OUTCOME_EMPTY_RESULT}

DURATION_METRICS: Final = (NODE_DURATION, REQUEST_DURATION, GEN_AI_CLIENT_OPERATION_DURATION)
TOKEN_HISTOGRAMS: Final = (GEN_AI_CLIENT_TOKEN_USAGE,)

DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
# GenAI semantic conventions: 1, 4, 16, ... 67108864 (powers of 4).
TOKEN_BUCKETS: Final[tuple[float, ...]] = tuple(float(4**i) for i in range(14))

# Never a metric attribute (cardinality / privacy).
FORBIDDEN_METRIC_ATTRIBUTES: Final = frozenset({USER_ID, SESSION_ID, "trace_id", "span_id"})
