"""The zero-code rule for SQL validation outcomes.

A graph node named in `OBSERVABILITY_VALIDATOR_NODES` is a validator. Each of its runs counts once in
`nl2sql.sql.validations`:
- `failed` when it raises (`error.type` from the exception), or when its state update carries an error
  marker: a non-empty `error_type`, `validation_error` or `sql_error` key, or a last message that is a
  `ToolMessage` with `status="error"`;
- `passed` otherwise.
A marker value that looks like an identifier (e.g. `unknown_column`) becomes `error.type`; free text
becomes the key name, so the label set stays small. `record_validation()` inside the node replaces
this count (nothing is counted twice).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MARKER_KEYS", "failure_of"]

MARKER_KEYS = ("error_type", "validation_error", "sql_error")
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")


def _update_of(output: Any) -> Any:
    """The state update inside a LangGraph `Command`, else the output itself."""
    update = getattr(output, "update", None)
    if update is not None and type(output).__name__ == "Command":
        return update
    return output


def _get(update: Any, key: str) -> Any:
    if isinstance(update, Mapping):
        return update.get(key)
    return getattr(update, key, None) if hasattr(update, "model_fields") else None


def _marker(update: Any) -> str | None:
    for key in MARKER_KEYS:
        value = _get(update, key)
        if value:
            return value if isinstance(value, str) and _IDENTIFIER.match(value) else key
    messages = _get(update, "messages")
    if isinstance(messages, Sequence) and not isinstance(messages, str) and messages:
        last = messages[-1]
        if type(last).__name__ == "ToolMessage" and getattr(last, "status", None) == "error":
            return "tool_error"
    return None


def failure_of(output: Any) -> str | None:
    """The `error.type` of a failed validation in a validator node's output, or None if it passed."""
    update = _update_of(output)
    if isinstance(update, Sequence) and not isinstance(update, str | bytes | Mapping):
        for item in update:  # a list of updates (e.g. several Commands)
            found = _marker(_update_of(item))
            if found is not None:
                return found
        return None
    return _marker(update)
