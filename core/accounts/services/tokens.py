"""API tokens (django-rest-knox): created per user, shown once, stored hashed, revocable.

The API, the admin and `manage.py create_api_token` all create tokens here, so the policy
holds on every path: only users holding a role in RAMPART_TOKEN_ROLES get one, and every
token expires after RAMPART_TOKEN_TTL_DAYS unless asked otherwise, within
RAMPART_TOKEN_MAX_TTL_DAYS (0 for either: no default lifetime / no maximum).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from knox.models import AuthToken

from core.accounts import roles
from core.accounts.errors import TokenRoleRefused

DEFAULT_TOKEN_ROLES = (roles.OPERATOR, roles.APPROVER, roles.ADMIN)


@dataclass(frozen=True)
class TokenPolicy:
    default_days: int  # 0: tokens created without a lifetime never expire
    max_days: int  # 0: no maximum
    roles: tuple[str, ...]


def token_policy() -> TokenPolicy:
    """The policy as configured now (read per call, so a settings change applies at once)."""
    return TokenPolicy(
        default_days=int(getattr(settings, "RAMPART_TOKEN_TTL_DAYS", 90) or 0),
        max_days=int(getattr(settings, "RAMPART_TOKEN_MAX_TTL_DAYS", 365) or 0),
        roles=tuple(getattr(settings, "RAMPART_TOKEN_ROLES", DEFAULT_TOKEN_ROLES)),
    )


def may_mint(user: AbstractBaseUser) -> bool:
    """Does `user` hold a role allowed to own API tokens (a superuser counts as admin)?"""
    return roles.has_any(user, set(token_policy().roles))


def mint_refusal(user: AbstractBaseUser) -> str:
    """Why `user` may not own a token, naming the setting that decides it."""
    held = ", ".join(sorted(roles.roles_of(user))) or "no role"
    allowed = ", ".join(token_policy().roles) or "nobody"
    return (
        f"{user.get_username()} holds {held}; API tokens are for {allowed} "
        "(set by RAMPART_TOKEN_ROLES)"
    )


def token_lifetime(expires_in_days: int | None) -> timedelta | None:
    """The lifetime of a new token: the one asked for (within the maximum), else the default
    (capped by the maximum). None: the token never expires."""
    policy = token_policy()
    if expires_in_days is None:
        days = policy.default_days or None
        if policy.max_days and (days is None or days > policy.max_days):
            days = policy.max_days
        return timedelta(days=days) if days else None
    if expires_in_days < 1:
        raise ValidationError({"expires_in_days": "at least 1 day"})
    if policy.max_days and expires_in_days > policy.max_days:
        raise ValidationError(
            {
                "expires_in_days": f"at most {policy.max_days} days "
                "(set by RAMPART_TOKEN_MAX_TTL_DAYS)"
            }
        )
    return timedelta(days=expires_in_days)


def token_create(
    *, user: AbstractBaseUser, expires_in_days: int | None = None
) -> tuple[AuthToken, str]:
    """A new token for `user` and its key; the key exists only in this return value.

    Raises TokenRoleRefused when the user's roles may not own tokens, ValidationError
    (keyed `expires_in_days`) for a lifetime beyond the maximum.
    """
    if not may_mint(user):
        raise TokenRoleRefused(mint_refusal(user))
    return AuthToken.objects.create(user=user, expiry=token_lifetime(expires_in_days))


def token_revoke(*, token: AuthToken) -> None:
    token.delete()
