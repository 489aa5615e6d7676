"""API tokens (django-rest-knox): created per user, shown once, stored hashed, revocable.

The API, the admin and `manage.py create_api_token` all create tokens here.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from knox.models import AuthToken

MAX_DAYS = 3650


def token_create(
    *, user: AbstractBaseUser, expires_in_days: int | None = None
) -> tuple[AuthToken, str]:
    """A new token for `user` and its key; the key exists only in this return value."""
    expiry = timedelta(days=expires_in_days) if expires_in_days else None
    return AuthToken.objects.create(user=user, expiry=expiry)


def token_revoke(*, token: AuthToken) -> None:
    token.delete()
