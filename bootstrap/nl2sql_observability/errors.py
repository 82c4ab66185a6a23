"""The one error type of every setting, in a module that imports nothing of the package: each section's
settings module (logging, scrubber, audit log, instrumentor, price table) subclasses it without
importing `settings`, which composes the sections."""

from __future__ import annotations

__all__ = ["ConfigurationError"]


class ConfigurationError(ValueError):
    """A setting has a bad value. The message names the variable, the value and the allowed values.
    Each section's error (logging, scrubber, audit log, instrumentor, price table) is a subclass."""
