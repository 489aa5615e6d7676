"""Users and their roles, managed by an admin (API and dashboard call these).

Guards that keep the console administrable, checked under the rows' locks: an admin never
removes their own admin role nor deactivates themselves (SelfLockout), the last active
admin is never demoted or deactivated (LastAdmin), and only a superuser changes a
superuser's account (SuperuserOnly: else an admin could reset its password and take it).

Each change writes one audit entry naming the event (the signals add the row-level ones);
passwords never enter it: the entry says one was set, and whether it was generated.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from knox.models import AuthToken

from core.accounts import roles
from core.accounts.errors import LastAdmin, SelfLockout, SuperuserOnly
from core.audit.choices import AuditAction
from core.audit.services import REDACTED, record

GENERATED_PASSWORD_BYTES = 18  # 24 URL-safe characters


def generate_password() -> str:
    """An invite-style password, shown once to the admin who hands it over."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def _role_groups(names: Iterable[str]) -> list[Group]:
    wanted = sorted(set(names))
    unknown = [n for n in wanted if n not in roles.ALL]
    if unknown:
        raise ValidationError(
            {"roles": f"unknown role(s) {', '.join(unknown)}; one of {', '.join(roles.ALL)}"}
        )
    return list(Group.objects.filter(name__in=wanted))


def _role_names(user: AbstractUser) -> list[str]:
    return sorted(user.groups.filter(name__in=roles.ALL).values_list("name", flat=True))


def _holds_admin(user: AbstractUser, role_names: Iterable[str]) -> bool:
    return user.is_superuser or roles.ADMIN in role_names


def _locked(user: AbstractUser) -> AbstractUser:
    """The user's row re-read under its lock, so two admins' changes apply one after the other."""
    return get_user_model()._default_manager.select_for_update().get(pk=user.pk)


def _guard_superuser(actor: AbstractUser, user: AbstractUser) -> None:
    if user.is_superuser and not actor.is_superuser:
        raise SuperuserOnly(f"{user.get_username()} is a superuser: only a superuser may change it")


def _guard_last_admin(user: AbstractUser) -> None:
    """Refuse when no other active admin would remain (their rows locked while we decide)."""
    others = (
        get_user_model()
        # only the user rows: the role join is an outer join, which FOR UPDATE cannot lock
        ._default_manager.select_for_update(of=("self",))
        .filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name=roles.ADMIN))
        .exclude(pk=user.pk)
    )
    if not list(others.values_list("pk", flat=True)):
        raise LastAdmin(
            f"{user.get_username()} is the last active admin: make another user admin first"
        )


def _set_password(user: AbstractUser, password: str | None) -> str | None:
    """Validate and set `password` (a generated one when empty); returns the generated one."""
    generated = None if password else generate_password()
    chosen = password or generated
    try:
        validate_password(chosen, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    user.set_password(chosen)
    return generated


@transaction.atomic
def user_create(
    *,
    username: str,
    role_names: Iterable[str],
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    password: str | None = None,
) -> tuple[AbstractUser, str | None]:
    """A new active user holding `role_names`; returns it and the generated password (None
    when `password` was given). Raises ValidationError keyed by field."""
    groups = _role_groups(role_names)
    model = get_user_model()
    user = model(username=username, email=email, first_name=first_name, last_name=last_name)
    if model._default_manager.filter(username__iexact=username).exists():
        raise ValidationError({"username": f"a user named {username!r} exists"})
    generated = _set_password(user, password)
    user.full_clean(exclude=["password"])
    user.save()
    user.groups.set(groups)
    names = sorted(g.name for g in groups)
    record(
        AuditAction.USER_CREATE,
        user,
        after={
            "username": username,
            "email": email,
            "roles": names,
            "is_active": True,
            "password": REDACTED,
        },
        extra={"password": "generated" if generated else "given"},
    )
    return user, generated


@transaction.atomic
def user_set_roles(
    *, actor: AbstractUser, user: AbstractUser, role_names: Iterable[str]
) -> AbstractUser:
    """Make `user` hold exactly `role_names` (groups that are not roles are kept)."""
    user = _locked(user)
    _guard_superuser(actor, user)
    groups = _role_groups(role_names)
    before = _role_names(user)
    after = sorted(g.name for g in groups)
    if before == after:
        return user
    if _holds_admin(user, before) and not _holds_admin(user, after):
        if user.pk == actor.pk:
            raise SelfLockout("you cannot remove your own admin role: ask another admin")
        if user.is_active:
            _guard_last_admin(user)
    user.groups.remove(*Group.objects.filter(name__in=set(before) - set(after)))
    user.groups.add(*groups)
    record(
        AuditAction.USER_ROLES,
        user,
        before={"roles": before},
        after={"roles": after},
        changed=["roles"],
    )
    return user


@transaction.atomic
def user_deactivate(*, actor: AbstractUser, user: AbstractUser) -> AbstractUser:
    """Sign `user` out for good: logins and sessions stop working, their tokens are revoked."""
    user = _locked(user)
    if user.pk == actor.pk:
        raise SelfLockout("you cannot deactivate yourself: ask another admin")
    _guard_superuser(actor, user)
    if not user.is_active:
        return user
    if _holds_admin(user, _role_names(user)):
        _guard_last_admin(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    revoked, _ = AuthToken.objects.filter(user=user).delete()
    record(
        AuditAction.USER_DEACTIVATE,
        user,
        before={"is_active": True},
        after={"is_active": False},
        changed=["is_active"],
        extra={"tokens_revoked": revoked},
    )
    return user


@transaction.atomic
def user_reactivate(*, actor: AbstractUser, user: AbstractUser) -> AbstractUser:
    """Let `user` log in again (with the password they had; their tokens stay revoked)."""
    user = _locked(user)
    _guard_superuser(actor, user)
    if user.is_active:
        return user
    user.is_active = True
    user.save(update_fields=["is_active"])
    record(
        AuditAction.USER_REACTIVATE,
        user,
        before={"is_active": False},
        after={"is_active": True},
        changed=["is_active"],
    )
    return user


@transaction.atomic
def user_reset_password(
    *, actor: AbstractUser, user: AbstractUser, password: str | None = None
) -> str | None:
    """Set a new password (`password`, or a generated one that is returned to show once)."""
    user = _locked(user)
    _guard_superuser(actor, user)
    generated = _set_password(user, password)
    user.save(update_fields=["password"])
    record(
        AuditAction.PASSWORD_RESET,
        user,
        after={"password": REDACTED},
        changed=["password"],
        extra={"password": "generated" if generated else "given"},
    )
    return generated
