"""Query filters for the device API."""

from __future__ import annotations

import django_filters as filters

from rules.choices import AgentStatus
from rules.models import Device, DeviceGroup


class DeviceFilterSet(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=AgentStatus.choices)
    group = filters.CharFilter(
        field_name="groups__name", label="member of this device group (name)"
    )
    ruleset = filters.CharFilter(
        field_name="rulesets__name", label="applies this rule set directly (name)"
    )
    enrolled = filters.BooleanFilter(field_name="enrolled_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Device
        fields = {
            "name": ["exact", "icontains"],
            "address": ["exact"],
            "drifted": ["exact"],
            "stateful": ["exact"],
            "auto_repair": ["exact"],
        }


class DeviceGroupFilterSet(filters.FilterSet):
    ruleset = filters.CharFilter(field_name="rulesets__name", label="applies this rule set (name)")

    class Meta:
        model = DeviceGroup
        fields = {"name": ["exact", "icontains"], "description": ["icontains"]}
