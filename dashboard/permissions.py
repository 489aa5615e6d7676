"""Server-side role checks for dashboard views.

Templates hide edit controls from readers, but hiding is not enforcing: every view that
changes something is wrapped in `role_required`, which answers 403 to anyone without one
of the roles. The wrapper also tags the view (`view.rampart_roles`) so the permission
tests can find every write view from the URL map instead of a hand-kept list.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from core.accounts import roles


def role_required(allowed: set[str]) -> Callable:
    """Login required, then 403 unless the user holds one of `allowed` (any HTTP method)."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not roles.has_any(request.user, allowed):
                raise PermissionDenied("your role does not allow this")
            return view(request, *args, **kwargs)

        guarded = login_required(wrapped)
        guarded.rampart_roles = frozenset(allowed)  # type: ignore[attr-defined]
        return guarded

    return decorate


def reader(view: Callable) -> Callable:
    """Any signed-in user with a role (viewer and up) may read."""
    return role_required(roles.CAN_READ)(view)


editor = role_required(roles.CAN_EDIT)
deployer = role_required(roles.CAN_DEPLOY)
approver = role_required(roles.CAN_APPROVE)
