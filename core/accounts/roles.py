"""Roles are Django groups; these names are the whole RBAC vocabulary.

viewer reads; operator edits and deploys; approver approves pending changes (and reads);
admin does everything, managing users and their roles included. A superuser counts as admin.
"""

from __future__ import annotations

VIEWER = "viewer"
OPERATOR = "operator"
APPROVER = "approver"
ADMIN = "admin"
ALL = (VIEWER, OPERATOR, APPROVER, ADMIN)

CAN_READ = set(ALL)
CAN_EDIT = {OPERATOR, ADMIN}
CAN_DEPLOY = {OPERATOR, ADMIN}
CAN_APPROVE = {APPROVER, ADMIN}
CAN_ADMINISTER = {ADMIN}


def roles_of(user) -> set[str]:
    """The role names a user holds (cached on the user object for the request)."""
    if not user or not user.is_authenticated:
        return set()
    cached = getattr(user, "_rampart_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ALL).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ADMIN)
        user._rampart_roles = cached
    return cached


def has_any(user, allowed: set[str]) -> bool:
    return bool(roles_of(user) & allowed)
