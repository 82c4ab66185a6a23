"""Logging setup: JSON lines with trace context, or readable text. STUB: the forensics work replaces it."""

from __future__ import annotations


def configure_logging(*, json_format: bool | None = None, level: int | str | None = None) -> None:
    """Configure the root logger; idempotent. `json_format=None` means: JSON when OBSERVABILITY_EXPORTER=otlp."""
