"""Devices and device groups over HTTP; groups and rule sets are ordered lists of names."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from compiler.validate import probe_errors
from core.api_base import NameListField
from rules import services
from rules.api.base import PolicyModelSerializer
from rules.api.device_change_serializers import PendingDeviceChangeSerializer
from rules.choices import DefaultAction
from rules.console_sources import device_write_check
from rules.models import Device, DeviceGroup, PendingDeviceChange

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
    "console_seen_from",
]
# what the management-sources check reads (rules/console_sources.py), with defaults
_CHECKED = {
    "management_sources": [],
    "console_seen_from": None,
    "allow_console_lockout": False,
    "console_lockout_reason": "",
}


def probes_field() -> serializers.JSONField:
    return serializers.JSONField(
        required=False,
        help_text="health probes run by the agent after an apply (a failed one rolls back): "
        "[{type: tcp, host, port, timeout} | {type: icmp, host, timeout} | "
        "{type: http, url, expect_status, timeout}]",
    )


def validated_probes(value: object, field: str = "probes") -> list:
    """The probes, or a 400 naming the field at fault (`probes[1].port`, at the top level
    of the answer: call it from `validate`, not from `validate_probes`)."""
    errors = probe_errors(value, field=field)
    if errors:
        raise serializers.ValidationError(errors)
    return value if isinstance(value, list) else []


def _pending(obj: Device | DeviceGroup) -> dict | None:
    """The change of `obj` waiting for approval (prefetched by the viewsets), or None."""
    held = getattr(obj, "held_changes", None)
    if held is None:
        held = [c for c in (services.pending_device_change(obj),) if c is not None]
    return PendingDeviceChangeSerializer(held[0]).data if held else None


def _refs(serializer: PolicyModelSerializer, validated_data: dict) -> dict:
    return {n: validated_data.pop(n) for n in serializer.ref_fields if n in validated_data}


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
    """A managed host. What its agent reported (enrollment, status, drift) is read-only here.

    Where a rule set on the device requires approval, a change of what it enforces (default
    policy, management sources, flags, groups, rule sets) is held as `pending_change` until
    another approver approves it; the fields show the approved settings meanwhile. A newer
    write folds into the pending change; writing the approved values back withdraws it.
    """

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
    probes = probes_field()
    pending_change = serializers.SerializerMethodField()
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
            "probes",
            "allow_console_lockout",
            "console_lockout_reason",
            "pending_change",
            *AGENT_FIELDS,
            "created",
            "last_updated",
        ]
        read_only_fields = AGENT_FIELDS

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if "probes" in attrs:
            attrs["probes"] = validated_probes(attrs["probes"])
        candidate = Device(
            **{
                f: attrs.get(f, getattr(self.instance, f, default))
                for f, default in _CHECKED.items()
            }
        )
        request = self.context.get("request")
        device_write_check(
            device=candidate, before=self.instance, user=getattr(request, "user", None)
        )
        if "allow_console_lockout" in attrs or "console_lockout_reason" in attrs:
            attrs["console_lockout_reason"] = candidate.console_lockout_reason
        return attrs

    @extend_schema_field(PendingDeviceChangeSerializer(allow_null=True))
    def get_pending_change(self, obj: Device) -> dict | None:
        return _pending(obj)

    def create(self, validated_data: dict) -> Device:
        refs = _refs(self, validated_data)
        return services.device_create(device=Device(**validated_data), refs=refs)

    def update(self, instance: Device, validated_data: dict) -> Device:
        """Writes, or holds for approval (`self.held`: the pending change, then a 202)."""
        refs = _refs(self, validated_data)
        self.held: PendingDeviceChange | None = services.device_update(
            device=instance, data=validated_data, refs=refs
        )
        return instance


class DeviceGroupSerializer(PolicyModelSerializer):
    """Devices sharing rule sets. Where a device of the group (or a rule set, before or
    after) requires approval, a change of its rule sets is held as `pending_change`."""

    url = serializers.HyperlinkedIdentityField(view_name="devicegroup-detail")
    rulesets = NameListField(_ruleset_names, help_text="rule set names, in order")
    device_count = serializers.IntegerField(read_only=True)
    probes = probes_field()
    pending_change = serializers.SerializerMethodField()
    ref_fields = ("rulesets",)

    class Meta:
        model = DeviceGroup
        fields = [
            "id",
            "url",
            "name",
            "description",
            "rulesets",
            "probes",
            "pending_change",
            "device_count",
            "created",
            "last_updated",
        ]

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if "probes" in attrs:
            attrs["probes"] = validated_probes(attrs["probes"])
        return attrs

    @extend_schema_field(PendingDeviceChangeSerializer(allow_null=True))
    def get_pending_change(self, obj: DeviceGroup) -> dict | None:
        return _pending(obj)

    def save_refs(self, obj: DeviceGroup, refs: dict) -> None:
        if "rulesets" in refs:  # a new group has no devices: nothing to hold
            services.device_group_set_rulesets(group=obj, rulesets=refs["rulesets"])

    def update(self, instance: DeviceGroup, validated_data: dict) -> DeviceGroup:
        """Writes, or holds the rule sets for approval (`self.held`, then a 202)."""
        refs = _refs(self, validated_data)
        self.held: PendingDeviceChange | None = services.device_group_update(
            group=instance, data=validated_data, refs=refs
        )
        return instance
