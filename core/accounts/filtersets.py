"""Filters of the users list."""

from __future__ import annotations

import django_filters
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from core.accounts import roles


class UserFilterSet(django_filters.FilterSet):
    is_active = django_filters.BooleanFilter()
    role = django_filters.ChoiceFilter(
        choices=[(r, r) for r in roles.ALL], method="filter_role", label="holds this role"
    )

    class Meta:
        model = get_user_model()
        fields: list[str] = []

    def filter_role(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(groups__name=value).distinct()
