"""Shared model pieces."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from compiler import values


def check(errors: dict[str, list[str]], field: str, parse, *args):
    """Run a pure parser; collect its ValueError under `field`."""
    try:
        return parse(*args)
    except ValueError as exc:
        errors.setdefault(field, []).append(str(exc))
        return None


def raise_if(errors: dict[str, list[str]]) -> None:
    if errors:
        raise ValidationError(errors)


def validate_name(value: str) -> None:
    try:
        values.validate_name(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class NamedModel(models.Model):
    """Objects the policy document refers to by a unique name."""

    name = models.CharField(max_length=63, unique=True, validators=[validate_name])
    description = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_updated = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
