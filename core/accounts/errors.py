"""Why an account or token change is refused, as types: the API maps each to its status
(403 or 409), the dashboard and the command show the message."""

from __future__ import annotations


class AccountError(Exception):
    """A refused account change; `str(exc)` is the reason shown to the caller."""


class AccountConflict(AccountError):
    """409: the change would leave the console without a way to administer it."""


class SelfLockout(AccountConflict):
    """An admin removing their own admin role or deactivating themselves."""


class LastAdmin(AccountConflict):
    """The change would leave no active admin."""


class AccountForbidden(AccountError):
    """403: the actor's roles do not allow this change."""


class SuperuserOnly(AccountForbidden):
    """A superuser's account is changed only by a superuser (else an admin could take it)."""


class TokenRoleRefused(AccountForbidden):
    """The user holds no role listed in RAMPART_TOKEN_ROLES."""
