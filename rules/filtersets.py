"""Query filters for the policy API (they appear as parameters in the OpenAPI schema)."""

from __future__ import annotations

import django_filters as filters
from django.db.models import Q, QuerySet

from rules.choices import Action, Chain, NatType, Protocol
from rules.models import AddressGroup, AddressObject, NatRule, Rule, RuleSet, Service, ServiceGroup

NAME_LOOKUPS = ["exact", "icontains"]


class AddressObjectFilterSet(filters.FilterSet):
    class Meta:
        model = AddressObject
        fields = {
            "name": NAME_LOOKUPS,
            "value": ["exact", "icontains"],
            "description": ["icontains"],
        }


class AddressGroupFilterSet(filters.FilterSet):
    member = filters.CharFilter(
        method="filter_member", label="has this member (address, group or literal)"
    )

    class Meta:
        model = AddressGroup
        fields = {"name": NAME_LOOKUPS, "description": ["icontains"]}

    def filter_member(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(members__address__name=value)
            | Q(members__subgroup__name=value)
            | Q(members__literal=value)
        ).distinct()


class ServiceFilterSet(filters.FilterSet):
    protocol = filters.MultipleChoiceFilter(choices=Protocol.choices)

    class Meta:
        model = Service
        fields = {"name": NAME_LOOKUPS, "description": ["icontains"]}


class ServiceGroupFilterSet(filters.FilterSet):
    member = filters.CharFilter(method="filter_member", label="has this member (service or group)")

    class Meta:
        model = ServiceGroup
        fields = {"name": NAME_LOOKUPS, "description": ["icontains"]}

    def filter_member(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(members__service__name=value) | Q(members__subgroup__name=value)
        ).distinct()


class RuleSetFilterSet(filters.FilterSet):
    class Meta:
        model = RuleSet
        fields = {
            "name": NAME_LOOKUPS,
            "description": ["icontains"],
            "requires_approval": ["exact"],
        }


class RuleFilterSet(filters.FilterSet):
    ruleset = filters.ModelMultipleChoiceFilter(queryset=RuleSet.objects.all(), label="rule set id")
    ruleset_name = filters.CharFilter(field_name="ruleset__name", label="rule set name")
    chain = filters.MultipleChoiceFilter(choices=Chain.choices)
    action = filters.MultipleChoiceFilter(choices=Action.choices)
    protocol = filters.MultipleChoiceFilter(choices=Protocol.choices)
    address = filters.CharFilter(
        method="filter_address", label="uses this address, group or literal"
    )
    service = filters.CharFilter(
        method="filter_service", label="uses this service or service group"
    )
    uuid = filters.UUIDFilter()

    class Meta:
        model = Rule
        fields = {
            "enabled": ["exact"],
            "log": ["exact"],
            "comment": ["icontains"],
            "position": ["exact", "gte", "lte"],
            "expires_at": ["isnull", "lte", "gte"],
        }

    def filter_address(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(addresses__address__name=value)
            | Q(addresses__group__name=value)
            | Q(addresses__literal=value)
        ).distinct()

    def filter_service(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(service_refs__service__name=value) | Q(service_refs__group__name=value)
        ).distinct()


class NatRuleFilterSet(filters.FilterSet):
    ruleset = filters.ModelMultipleChoiceFilter(queryset=RuleSet.objects.all(), label="rule set id")
    ruleset_name = filters.CharFilter(field_name="ruleset__name", label="rule set name")
    type = filters.MultipleChoiceFilter(choices=NatType.choices)

    class Meta:
        model = NatRule
        fields = {"enabled": ["exact"], "comment": ["icontains"]}
