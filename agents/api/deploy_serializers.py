"""Serializers of deployments, enrollment and rule counters (input parsing and output shape)."""

from __future__ import annotations

from rest_framework import serializers

from agents.api.serializers import validated_probes
from agents.choices import DeploymentEvent
from agents.models import Deployment, DeviceDeployment, RuleCounter
from agents.selectors import deployment_state_counts, deployment_summary

MAX_ID = 2**63 - 1


class RolloutSerializer(serializers.Serializer):
    canary = serializers.IntegerField(min_value=0, required=False)
    wave_size = serializers.IntegerField(min_value=1, required=False)
    wave_percent = serializers.IntegerField(min_value=1, max_value=100, required=False)
    halt_on_failure = serializers.BooleanField(required=False)


class DeploymentCreateSerializer(serializers.Serializer):
    """Exactly one target: a list of device ids, a device group, or a rule set."""

    devices = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        required=False,
        allow_empty=False,
        max_length=100_000,
    )
    device_group = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)
    ruleset = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)
    revision = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)
    confirm_timeout = serializers.IntegerField(min_value=0, max_value=3600, required=False)
    rollout = RolloutSerializer(required=False)
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True)
    probes = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="health probes for every device of this deployment, in place of each "
        "device's own ([] runs none; absent or null: each device's)",
    )

    def validate(self, attrs: dict) -> dict:
        if attrs.get("probes") is not None:
            attrs["probes"] = validated_probes(attrs["probes"])
        given = [k for k in ("devices", "device_group", "ruleset") if k in attrs]
        if len(given) != 1:
            raise serializers.ValidationError("give exactly one of devices, device_group, ruleset")
        return attrs


class DeploymentResumeSerializer(serializers.Serializer):
    """POST /deployments/{id}/resume/: restart a halted rollout."""

    retry_failed = serializers.BooleanField(
        default=False,
        help_text="push the devices of the failed wave again (default: only the later waves)",
    )
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class DeploymentCancelSerializer(serializers.Serializer):
    """POST /deployments/{id}/cancel/: stop a queued, running or halted rollout."""

    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class DeploymentEventSerializer(serializers.Serializer):
    """One halt, resume or cancel of a rollout (waves counted from 1)."""

    event = serializers.ChoiceField(choices=DeploymentEvent.choices)
    at = serializers.DateTimeField()
    by = serializers.CharField()
    wave = serializers.IntegerField()
    note = serializers.CharField(allow_blank=True)


class RecordedRevisionSerializer(serializers.Serializer):
    """The revision of one rule set a deployment pushed."""

    id = serializers.IntegerField(allow_null=True, help_text="null: live content not yet recorded")
    number = serializers.IntegerField()
    hash = serializers.CharField()
    status = serializers.CharField()


class DeviceDeploymentSerializer(serializers.ModelSerializer):
    """One device's part; `settings` are the device settings it compiled (as approved)."""

    device_name = serializers.CharField(source="device.name", read_only=True)

    class Meta:
        model = DeviceDeployment
        fields = [
            "id",
            "device",
            "device_name",
            "wave",
            "state",
            "version",
            "bundle_hash",
            "settings",
            "attempts",
            "created_at",
            "started_at",
            "pushed_at",
            "applied_at",
            "confirmed_at",
            "finished_at",
            "updated_at",
            "transitions",
            "agent_response",
            "error",
            "superseded_by",
        ]
        read_only_fields = fields


class DeploymentSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None
    )
    counts = serializers.SerializerMethodField()
    events = DeploymentEventSerializer(many=True, read_only=True)
    revisions = serializers.DictField(
        child=RecordedRevisionSerializer(),
        read_only=True,
        help_text="rule set name -> the revision of it this deployment pushed",
    )

    class Meta:
        model = Deployment
        fields = [
            "id",
            "created_at",
            "created_by",
            "trigger",
            "target",
            "revision",
            "revisions",
            "confirm_timeout",
            "rollout",
            "probes",
            "status",
            "current_wave",
            "waves",
            "reason",
            "halt_reason",
            "events",
            "finished_at",
            "counts",
        ]
        read_only_fields = fields

    def get_counts(self, obj: Deployment) -> dict[str, int]:
        return deployment_state_counts(obj)


class DeploymentDetailSerializer(DeploymentSerializer):
    devices = DeviceDeploymentSerializer(source="device_deployments", many=True, read_only=True)

    class Meta(DeploymentSerializer.Meta):
        fields = [*DeploymentSerializer.Meta.fields, "devices"]
        read_only_fields = fields

    def to_representation(self, instance: Deployment) -> dict:
        data = super().to_representation(instance)
        data["waves"] = deployment_summary(instance)["waves"]
        return data


class EnrollmentTokenCreateSerializer(serializers.Serializer):
    ttl = serializers.IntegerField(
        min_value=60,
        max_value=30 * 86400,
        required=False,
        help_text="seconds until the token expires",
    )


class EnrollmentTokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="shown once; only its hash is stored")
    device = serializers.CharField()
    device_id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()


class EnrollSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=100)
    public_key = serializers.CharField(max_length=100)
    cert_fingerprint = serializers.CharField(max_length=100)
    listen_port = serializers.IntegerField(min_value=1, max_value=65535)
    facts = serializers.DictField(required=False)


class EnrollAnswerSerializer(serializers.Serializer):
    device = serializers.CharField()
    device_id = serializers.IntegerField()
    console_public_key = serializers.CharField()


class RuleCounterSerializer(serializers.ModelSerializer):
    device_name = serializers.CharField(source="device.name", read_only=True)

    class Meta:
        model = RuleCounter
        fields = [
            "device",
            "device_name",
            "rule_uuid",
            "packets",
            "bytes",
            "last_hit_at",
            "first_seen_at",
        ]
        read_only_fields = fields


class UnusedRuleSerializer(serializers.Serializer):
    rule = serializers.UUIDField()
    ruleset = serializers.CharField()
    position = serializers.IntegerField()
    comment = serializers.CharField()
    last_hit_at = serializers.DateTimeField(allow_null=True)
    counted_since = serializers.DateTimeField(
        allow_null=True, help_text="null: no agent ever reported this rule"
    )
    packets_total = serializers.IntegerField()
