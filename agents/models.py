"""Devices (hosts running rampart-agent) and device groups.

A device's policy is an ordered list of rule sets: those of its groups (in group order,
then each group's rule set order), then its own (POLICY-FORMAT.md, "Meaning" step 5).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from rules.compiler import values
from rules.models.base import NamedModel, check, raise_if

from .choices import (
    AgentStatus,
    DefaultAction,
    DeploymentStatus,
    DeploymentTrigger,
    DeviceDeploymentState,
)


class DeviceGroup(NamedModel):
    """Devices that share rule sets (e.g. every web server)."""

    rulesets = models.ManyToManyField("rules.RuleSet", through="agents.DeviceGroupRuleSet", related_name="device_groups")

    class Meta(NamedModel.Meta):
        verbose_name = "device group"


class DeviceGroupRuleSet(models.Model):
    group = models.ForeignKey("agents.DeviceGroup", on_delete=models.CASCADE, related_name="ruleset_links")
    ruleset = models.ForeignKey("rules.RuleSet", on_delete=models.PROTECT, related_name="device_group_links")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["group", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["group", "ruleset"], name="devicegroupruleset_unique")]

    def __str__(self) -> str:
        return f"{self.group} → {self.ruleset}"


class Device(NamedModel):
    """A host whose firewall Rampart manages through its agent."""

    address = models.GenericIPAddressField(help_text="where its agent listens")
    agent_port = models.PositiveIntegerField(default=8745)
    tags = models.JSONField(default=list, blank=True)
    groups = models.ManyToManyField("agents.DeviceGroup", through="agents.DeviceMembership", related_name="devices")
    rulesets = models.ManyToManyField("rules.RuleSet", through="agents.DeviceRuleSet", related_name="devices")
    default_input = models.CharField(max_length=8, choices=DefaultAction.choices, default=DefaultAction.DROP)
    default_forward = models.CharField(max_length=8, choices=DefaultAction.choices, default=DefaultAction.DROP)
    default_output = models.CharField(max_length=8, choices=DefaultAction.choices, default=DefaultAction.ACCEPT)
    management_sources = models.JSONField(
        default=list, blank=True, help_text="addresses that always reach the agent port and ssh"
    )
    stateful = models.BooleanField(default=True, help_text="accept established/related early, drop invalid")
    allow_loopback = models.BooleanField(default=True)
    auto_repair = models.BooleanField(default=False, help_text="re-deploy automatically when drift is found")
    forward_fallthrough = models.BooleanField(
        default=False,
        help_text="Docker/kube-proxy hosts: with a forward default of accept, forwarded packets no rule "
        "decides return to FORWARD (DOCKER-USER, Docker's isolation) instead of being accepted",
    )

    # What the agent told us (filled by enrollment and status polls).
    agent_public_key = models.CharField(max_length=64, blank=True)
    agent_cert_fingerprint = models.CharField(max_length=64, blank=True)
    enrolled_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=AgentStatus.choices, default=AgentStatus.UNKNOWN)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    facts = models.JSONField(default=dict, blank=True)
    applied_hash = models.CharField(max_length=64, blank=True)
    applied_version = models.PositiveBigIntegerField(default=0)
    drifted = models.BooleanField(default=False)
    drift_diff = models.TextField(blank=True)

    # Deploy engineer: the per-device push lease (at most one push in flight per device).
    # A conditional UPDATE takes it, so it works on SQLite and PostgreSQL alike, and it
    # expires with the task time limit, so a killed worker never blocks a device for good.
    push_lease_owner = models.CharField(max_length=200, null=True, blank=True, editable=False)
    push_lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if not 0 < (self.agent_port or 0) <= 65535:
            errors["agent_port"] = [f"port {self.agent_port} is out of range (1-65535)"]
        if not isinstance(self.tags, list) or not all(isinstance(t, str) for t in self.tags):
            errors["tags"] = ["tags must be a list of strings"]
        if not isinstance(self.management_sources, list):
            errors["management_sources"] = ["must be a list of addresses or address names"]
        else:
            for item in self.management_sources:
                if not isinstance(item, str):
                    errors.setdefault("management_sources", []).append(f"{item!r} is not a string")
                elif any(c in item for c in "./:") and not values.NAME_RE.match(item):
                    check(errors, "management_sources", values.parse_address, item)
        raise_if(errors)

    @property
    def default_policy(self) -> dict[str, str]:
        return {"input": self.default_input, "forward": self.default_forward, "output": self.default_output}


class DeviceMembership(models.Model):
    device = models.ForeignKey("agents.Device", on_delete=models.CASCADE, related_name="group_links")
    group = models.ForeignKey("agents.DeviceGroup", on_delete=models.PROTECT, related_name="device_links")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["device", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["device", "group"], name="devicemembership_unique")]

    def __str__(self) -> str:
        return f"{self.device} ∈ {self.group}"


class DeviceRuleSet(models.Model):
    device = models.ForeignKey("agents.Device", on_delete=models.CASCADE, related_name="ruleset_links")
    ruleset = models.ForeignKey("rules.RuleSet", on_delete=models.PROTECT, related_name="device_links")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["device", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["device", "ruleset"], name="deviceruleset_unique")]

    def __str__(self) -> str:
        return f"{self.device} → {self.ruleset}"


# --- Deployments, counters, enrollment (deploy engineer) ----------------------------------


class Deployment(models.Model):
    """One request to push policy to a set of devices, possibly in waves.

    The target is kept as it was asked for (devices / group / rule set) because group
    membership may change later; the devices actually chosen are the DeviceDeployments.
    """

    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="deployments"
    )
    trigger = models.CharField(max_length=8, choices=DeploymentTrigger.choices, default=DeploymentTrigger.MANUAL)
    target = models.JSONField(default=dict, help_text='{"kind": devices|device_group|ruleset, "ids": [...], "label": ...}')
    revision = models.PositiveIntegerField(
        null=True, blank=True, help_text="id of the rule set revision asked for (none: each rule set's deployable one)")
    document = models.JSONField(
        null=True, blank=True, editable=False,
        help_text="the policy document every device of this deployment compiles from (snapshot at creation)")
    confirm_timeout = models.PositiveIntegerField(default=30, help_text="seconds; 0 = no commit-confirmed")
    rollout = models.JSONField(default=dict, blank=True, help_text="canary, wave_size | wave_percent, halt_on_failure")
    waves = models.JSONField(default=list, blank=True, help_text="per wave: index, size, state, started_at, finished_at")
    current_wave = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=DeploymentStatus.choices, default=DeploymentStatus.QUEUED)
    reason = models.CharField(max_length=255, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status"], name="deployment_status_idx")]

    def __str__(self) -> str:
        return f"deployment #{self.pk} ({self.target.get('label', '')})"


class DeviceDeployment(models.Model):
    """One device's part of a deployment: its state machine and the agent's answer."""

    deployment = models.ForeignKey("agents.Deployment", on_delete=models.CASCADE, related_name="device_deployments")
    device = models.ForeignKey("agents.Device", on_delete=models.CASCADE, related_name="deployments")
    wave = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=12, choices=DeviceDeploymentState.choices, default=DeviceDeploymentState.QUEUED)
    version = models.PositiveBigIntegerField(null=True, blank=True, help_text="bundle version sent to the agent")
    bundle_hash = models.CharField(max_length=64, blank=True)
    transitions = models.JSONField(default=list, blank=True, help_text="every state change: {state, at, note}")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    agent_response = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    superseded_by = models.ForeignKey(
        "agents.DeviceDeployment", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["deployment", "wave", "id"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "device"], name="devicedeployment_unique"),
        ]
        indexes = [models.Index(fields=["device", "state"], name="devicedeployment_dev_state_idx")]

    def __str__(self) -> str:
        return f"{self.device} in deployment #{self.deployment_id}: {self.state}"


class RuleCounter(models.Model):
    """Traffic totals per device and rule UUID that survive agent counter resets.

    The agent reports raw kernel counters, which drop to zero when chains are rewritten or
    the host reboots; `last_raw_*` lets ingest add only the growth (or the whole new raw
    value after a reset) so a reset never looks like negative or zero traffic.
    """

    device = models.ForeignKey("agents.Device", on_delete=models.CASCADE, related_name="rule_counters")
    rule_uuid = models.UUIDField()
    packets = models.PositiveBigIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    last_raw_packets = models.PositiveBigIntegerField(default=0)
    last_raw_bytes = models.PositiveBigIntegerField(default=0)
    last_hit_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["device", "rule_uuid"]
        constraints = [models.UniqueConstraint(fields=["device", "rule_uuid"], name="rulecounter_unique")]
        indexes = [models.Index(fields=["rule_uuid"], name="rulecounter_uuid_idx")]

    def __str__(self) -> str:
        return f"{self.device} {self.rule_uuid}: {self.packets} packets"


class EnrollmentToken(models.Model):
    """A one-time, expiring secret that lets one agent enroll as one device.

    Only a SHA-256 of the token is stored (like a password), with a short prefix to tell
    tokens apart in listings; the token itself is shown once, when made.
    """

    device = models.ForeignKey("agents.Device", on_delete=models.CASCADE, related_name="enrollment_tokens")
    digest = models.CharField(max_length=64, unique=True, help_text="sha256 hex of the token")
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"enrollment token {self.prefix}… for {self.device}"
