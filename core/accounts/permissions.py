"""DRF permission classes, one per capability. Every API view names one explicitly."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from . import roles
from .services.tokens import may_mint, mint_refusal


class _RolePermission(BasePermission):
    """Reads need any role; writes need one of `write_roles`."""

    write_roles: set[str] = set()
    read_roles: set[str] = roles.CAN_READ
    message = "Your role does not allow this action."

    def has_permission(self, request, view) -> bool:
        allowed = self.read_roles if request.method in SAFE_METHODS else self.write_roles
        return roles.has_any(request.user, allowed)


class CanView(_RolePermission):
    """Read-only endpoints: any role may read, nobody may write through them."""

    write_roles: set[str] = set()


class CanEdit(_RolePermission):
    """Policy objects: viewers read, operators and admins write."""

    write_roles = roles.CAN_EDIT


class CanDeploy(_RolePermission):
    write_roles = roles.CAN_DEPLOY


class CanApprove(_RolePermission):
    write_roles = roles.CAN_APPROVE


class IsRampartAdmin(_RolePermission):
    read_roles = roles.CAN_ADMINISTER
    write_roles = roles.CAN_ADMINISTER


class IsAuthenticatedSelf(BasePermission):
    """Any signed-in user, acting on their own things (e.g. their API tokens)."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated)


class CanMintToken(BasePermission):
    """Creating an API token: only roles listed in RAMPART_TOKEN_ROLES (the 403 names it)."""

    message = "Your roles may not create API tokens (set by RAMPART_TOKEN_ROLES)."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if may_mint(user):
            return True
        self.message = mint_refusal(user)
        return False
