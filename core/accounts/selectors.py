"""Reads of users, their roles and their tokens (the users API and dashboard page)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db.models import Prefetch, QuerySet
from knox.models import AuthToken

from core.accounts import roles


def user_list() -> QuerySet:
    """Every user, by name, with their role groups prefetched (`role_groups`)."""
    return (
        get_user_model()
        ._default_manager.order_by("username")
        .prefetch_related(
            Prefetch(
                "groups",
                queryset=Group.objects.filter(name__in=roles.ALL).order_by("name"),
                to_attr="role_groups",
            )
        )
    )


def role_names_of(user: AbstractUser) -> list[str]:
    """The role groups a user holds, from the prefetch of `user_list` when there is one."""
    groups = getattr(user, "role_groups", None)
    if groups is None:
        return sorted(user.groups.filter(name__in=roles.ALL).values_list("name", flat=True))
    return [g.name for g in groups]


def tokens_of(user: AbstractUser) -> QuerySet:
    """A user's API tokens, newest first (hashes stay in the row; callers list prefixes)."""
    return AuthToken.objects.filter(user=user).select_related("user").order_by("-created")
