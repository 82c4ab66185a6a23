"""The `nl2sql-obs` command: each subcommand lives in a module of its own under this package."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules each expose `register(subparsers) -> None`; imported lazily so that
# `nl2sql-obs scrub` does not pay for LangGraph and `nl2sql-obs demo` does not pay for SQLite audit code.
SUBCOMMANDS: dict[str, str] = {
    "demo": "nl2sql_observability.cli.demo",
    "audit": "nl2sql_observability.cli.audit",
    "scrub": "nl2sql_observability.cli.scrub",
    "feedback": "nl2sql_observability.cli.feedback",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser; with `only`, import just that subcommand's module."""
    parser = argparse.ArgumentParser(
        prog="nl2sql-obs",
        description="nl2sql-observability: a demo NL2SQL app, the audit log of LLM calls, the scrubber.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        if only is not None and name != only:
            subparsers.add_parser(name)
            continue
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nl2sql-obs` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(only=first if first in SUBCOMMANDS else None)
    args = parser.parse_args(args_list)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
