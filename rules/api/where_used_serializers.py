"""Shapes of the where-used answer and of the unused-objects report (read-only)."""

from __future__ import annotations

from rest_framework import serializers


class UseSerializer(serializers.Serializer):
    """One user of the object and the path that leads to it."""

    kind = serializers.CharField(help_text="address group, rule, NAT rule, rule set, device, …")
    id = serializers.IntegerField(source="pk")
    name = serializers.CharField(source="label", help_text='e.g. "rule edge#3"')
    direct = serializers.BooleanField(help_text="named by the object itself, not via a group")
    path = serializers.ListField(
        child=serializers.CharField(),
        help_text="steps from the object to this user, this user last",
    )
    via = serializers.CharField(help_text='"address group web → rule edge#3"; empty when direct')
    rule_uuid = serializers.CharField(source="detail", help_text="rules only")


class WhereUsedSerializer(serializers.Serializer):
    kind = serializers.CharField()
    id = serializers.IntegerField()
    name = serializers.CharField()
    used = serializers.BooleanField(help_text="false: nothing uses it, safe to delete")
    users = UseSerializer(many=True)


class UnusedSerializer(serializers.Serializer):
    kind = serializers.CharField(
        help_text="address, address group, service, service group, zone, rule set"
    )
    id = serializers.IntegerField(source="pk")
    name = serializers.CharField()
    reason = serializers.CharField()


class UnusedReportSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = UnusedSerializer(many=True)
