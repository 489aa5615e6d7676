"""Filters for the audit log, shared by the API and the UI's audit page."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from .choices import AuditAction, AuditChannel
from .models import AuditEntry


class AuditEntryFilterSet(django_filters.FilterSet):
    """actor, object, action, channel, time range, free-text `q`."""

    actor = django_filters.CharFilter(field_name="actor")
    user_id = django_filters.NumberFilter(field_name="user_id")
    token = django_filters.CharFilter(field_name="token")
    action = django_filters.MultipleChoiceFilter(choices=AuditAction.choices)
    channel = django_filters.MultipleChoiceFilter(choices=AuditChannel.choices)
    object_type = django_filters.CharFilter(field_name="object_type")
    object_id = django_filters.CharFilter(field_name="object_id")
    request_id = django_filters.CharFilter(field_name="request_id")
    ticket = django_filters.CharFilter(field_name="ticket")
    since = django_filters.IsoDateTimeFilter(field_name="time", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="time", lookup_expr="lt")
    q = django_filters.CharFilter(method="filter_q", label="search")

    class Meta:
        model = AuditEntry
        fields: list[str] = []

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return search(queryset, value)


def search(queryset: QuerySet, text: str) -> QuerySet:
    """Entries whose actor, object, reason, ticket or request id contain `text`."""
    text = text.strip()
    if not text:
        return queryset
    return queryset.filter(
        Q(actor__icontains=text)
        | Q(object_name__icontains=text)
        | Q(object_id=text)
        | Q(reason__icontains=text)
        | Q(ticket__icontains=text)
        | Q(request_id=text)
        | Q(object_type__icontains=text)
    )
