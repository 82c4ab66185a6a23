"""Tenant context: a strict user-context model carried in baggage and a contextvar.

STUB of the public names other modules rely on; the bootstrap work implements it.
"""

from __future__ import annotations

from pydantic import BaseModel


class UserContext(BaseModel):
    """Who asked: tenant, user, session, roles. Strict; unknown fields rejected."""

    tenant_id: str
    user_id: str | None = None
    session_id: str | None = None


def current_user_context() -> UserContext | None:
    """The user context active in this task/thread, if any."""
    return None


def current_node() -> str | None:
    """The name of the NL2SQL graph node running in this task/thread, if any."""
    return None
