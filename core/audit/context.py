"""Who is acting, through which channel: a context variable set per request, task or command.

The middleware stores the request itself; the actor is read from it only when an entry is
written, because DRF authenticates API tokens after the middleware has run.
"""

from __future__ import annotations

import contextvars
import getpass
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from .choices import AuditChannel


@dataclass(frozen=True)
class AuditContext:
    channel: str = AuditChannel.SYSTEM
    actor: str | None = None  # fixed actor (tasks, commands); else taken from `request`
    request: Any = None
    request_id: str = ""
    client_ip: str = ""
    user_agent: str = ""
    reason: str = ""
    ticket: str = ""
    extra: dict = field(default_factory=dict)


_current: contextvars.ContextVar[AuditContext | None] = contextvars.ContextVar(
    "rampart_audit", default=None
)
_disabled: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "rampart_audit_disabled", default=False
)


def current() -> AuditContext:
    """The active context; outside any request, task or command: an anonymous system actor."""
    return _current.get() or AuditContext(actor="system")


def set_context(ctx: AuditContext) -> contextvars.Token:
    return _current.set(ctx)


def reset_context(token: contextvars.Token) -> None:
    _current.reset(token)


@contextmanager
def audit_context(
    actor: str | None = None,
    channel: str | None = None,
    *,
    reason: str | None = None,
    ticket: str | None = None,
    request_id: str | None = None,
    **extra: Any,
) -> Iterator[AuditContext]:
    """Attribute every entry written inside the block, e.g. `audit_context(actor="system:deploy",
    channel="system")` in a Celery task. Unset arguments are inherited from the outer context."""
    outer = _current.get() or AuditContext()
    changes: dict[str, Any] = {"extra": {**outer.extra, **extra}}
    if actor is not None:
        changes.update(actor=actor, request=None)
    if channel is not None:
        changes["channel"] = channel
    if reason is not None:
        changes["reason"] = reason
    if ticket is not None:
        changes["ticket"] = ticket
    changes["request_id"] = request_id or outer.request_id or uuid.uuid4().hex
    ctx = replace(outer, **changes)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


@contextmanager
def audit_disabled() -> Iterator[None]:
    """Write no entries inside the block. Only for the benchmark's baseline and for tests."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


def is_disabled() -> bool:
    return _disabled.get()


def actor_of(ctx: AuditContext) -> tuple[str, int | None, str]:
    """(actor, user id, token prefix) for the context; the user comes from the request."""
    request = ctx.request
    if request is not None:
        user = getattr(request, "user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            return user.get_username(), user.pk, token_prefix(getattr(request, "auth", None))
        return "anonymous", None, ""
    return ctx.actor or "system", None, ""


def current_user():
    """The signed-in user acting now, or None (system, command line, anonymous)."""
    ctx = current()
    user = getattr(ctx.request, "user", None) if ctx.request is not None else None
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def token_prefix(auth: Any) -> str:
    """A knox token's public identifier: the first 8 characters of its lookup key."""
    key = getattr(auth, "token_key", None)
    return f"knox:{key[:8]}" if isinstance(key, str) and key else ""


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no passwd entry (containers)
        return "cli:unknown"
