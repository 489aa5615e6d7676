"""Devices and device groups over HTTP; groups and rule sets are ordered lists of names."""

from __future__ import annotations

from rest_framework import serializers

from agents import services
from core.api_base import NameListField
from rules.api.base import PolicyModelSerializer
from rules.choices import DefaultAction
from rules.models import Device, DeviceGroup

AGENT_FIELDS = [
    "agent_public_key",
    "agent_cert_fingerprint",
    "enrolled_at",
    "status",
    "last_seen_at",
    "facts",
    "applied_hash",
    "applied_version",
    "drifted",
    "drift_diff",
]


def _group_names(device: Device) -> list[str]:
    return [link.group.name for link in device.group_links.all()]


def _ruleset_names(obj: Device | DeviceGroup) -> list[str]:
    return [link.ruleset.name for link in obj.ruleset_links.all()]


class DefaultPolicySerializer(serializers.Serializer):
    """What each chain does with a packet no rule matched."""

    input = serializers.ChoiceField(
        choices=DefaultAction.choices, source="default_input", required=False
    )
    forward = serializers.ChoiceField(
        choices=DefaultAction.choices, source="default_forward", required=False
    )
    output = serializers.ChoiceField(
        choices=DefaultAction.choices, source="default_output", required=False
    )


class DeviceSerializer(PolicyModelSerializer):
    """A managed host. What its agent reported (enrollment, status, drift) is read-only here."""

    url = serializers.HyperlinkedIdentityField(view_name="device-detail")
    groups = NameListField(_group_names, help_text="device group names, in order")
    rulesets = NameListField(
        _ruleset_names, help_text="the device's own rule sets, applied after its groups'"
    )
    default_policy = DefaultPolicySerializer(source="*", required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    management_sources = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="addresses or address names that always reach the agent port and ssh",
    )
    facts = serializers.DictField(read_only=True)
    ref_fields = ("groups", "rulesets")

    class Meta:
        model = Device
        fields = [
            "id",
            "url",
            "name",
            "description",
            "address",
            "agent_port",
            "tags",
            "groups",
            "rulesets",
            "default_policy",
            "management_sources",
            "stateful",
            "allow_loopback",
            "auto_repair",
            "forward_fallthrough",
            *AGENT_FIELDS,
            "created",
            "last_updated",
        ]
        read_only_fields = AGENT_FIELDS

    def save_refs(self, obj: Device, refs: dict) -> None:
        if "groups" in refs:
            services.device_set_groups(device=obj, groups=refs["groups"])
        if "rulesets" in refs:
            services.device_set_rulesets(device=obj, rulesets=refs["rulesets"])


class DeviceGroupSerializer(PolicyModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="devicegroup-detail")
    rulesets = NameListField(_ruleset_names, help_text="rule set names, in order")
    device_count = serializers.IntegerField(read_only=True)
    ref_fields = ("rulesets",)

    class Meta:
        model = DeviceGroup
        fields = [
            "id",
            "url",
            "name",
            "description",
            "rulesets",
            "device_count",
            "created",
            "last_updated",
        ]

    def save_refs(self, obj: DeviceGroup, refs: dict) -> None:
        if "rulesets" in refs:
            services.device_group_set_rulesets(group=obj, rulesets=refs["rulesets"])
