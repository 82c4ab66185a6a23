"""OpenTelemetry distro, tenant context and audit log for an NL2SQL service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nl2sql-observability")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
