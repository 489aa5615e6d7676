"""Devices (hosts running rampart-agent) and device groups: the targets of policy.

A device's policy is an ordered list of rule sets: those of its groups (in group order,
then each group's rule set order), then its own (POLICY-FORMAT.md, "Meaning" step 5).
The fleet (`agents`) keeps what it learns from the agent on the device row (keys, status,
facts, applied bundle, push lease); the tables keep the names they were created with.
"""

from __future__ import annotations

from django.db import models

from compiler import values
from compiler.validate import probe_errors
from rules.choices import AgentStatus, DefaultAction
from rules.models.base import NamedModel, check, raise_if


class DeviceGroup(NamedModel):
    """Devices that share rule sets (e.g. every web server)."""

    rulesets = models.ManyToManyField(
        "rules.RuleSet", through="rules.DeviceGroupRuleSet", related_name="device_groups"
    )
    probes = models.JSONField(
        default=list,
        blank=True,
        help_text="health probes for its devices that have none of their own "
        "(POLICY-FORMAT.md, probes)",
    )

    def clean(self) -> None:
        raise_if(probe_errors(self.probes))

    class Meta(NamedModel.Meta):
        db_table = "agents_devicegroup"
        verbose_name = "device group"


class DeviceGroupRuleSet(models.Model):
    group = models.ForeignKey(
        "rules.DeviceGroup", on_delete=models.CASCADE, related_name="ruleset_links"
    )
    ruleset = models.ForeignKey(
        "rules.RuleSet", on_delete=models.PROTECT, related_name="device_group_links"
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "agents_devicegroupruleset"
        ordering = ["group", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["group", "ruleset"], name="devicegroupruleset_unique")
        ]

    def __str__(self) -> str:
        return f"{self.group} → {self.ruleset}"


class Device(NamedModel):
    """A host whose firewall Rampart manages through its agent."""

    address = models.GenericIPAddressField(help_text="where its agent listens")
    agent_port = models.PositiveIntegerField(default=8745)
    tags = models.JSONField(default=list, blank=True)
    groups = models.ManyToManyField(
        "rules.DeviceGroup", through="rules.DeviceMembership", related_name="devices"
    )
    rulesets = models.ManyToManyField(
        "rules.RuleSet", through="rules.DeviceRuleSet", related_name="devices"
    )
    default_input = models.CharField(
        max_length=8, choices=DefaultAction.choices, default=DefaultAction.DROP
    )
    default_forward = models.CharField(
        max_length=8, choices=DefaultAction.choices, default=DefaultAction.DROP
    )
    default_output = models.CharField(
        max_length=8, choices=DefaultAction.choices, default=DefaultAction.ACCEPT
    )
    management_sources = models.JSONField(
        default=list, blank=True, help_text="addresses that always reach the agent port and ssh"
    )
    stateful = models.BooleanField(
        default=True, help_text="accept established/related early, drop invalid"
    )
    allow_loopback = models.BooleanField(default=True)
    auto_repair = models.BooleanField(
        default=False, help_text="re-deploy automatically when drift is found"
    )
    forward_fallthrough = models.BooleanField(
        default=False,
        help_text="Docker/kube-proxy hosts: with a forward default of accept, forwarded packets no rule "
        "decides return to FORWARD (DOCKER-USER, Docker's isolation) instead of being accepted",
    )
    probes = models.JSONField(
        default=list,
        blank=True,
        help_text="health probes the agent runs after an apply (a failed one rolls back); "
        "empty: its groups' probes",
    )
    # Management sources that leave out the console's addresses (or are empty) are refused
    # unless an admin sets this, with a reason (rules/console_sources.py).
    allow_console_lockout = models.BooleanField(
        default=False,
        help_text="accept management sources that do not cover the console's addresses",
    )
    console_lockout_reason = models.CharField(max_length=255, blank=True)

    # What the agent told us (filled by enrollment and status polls).
    agent_public_key = models.CharField(max_length=64, blank=True)
    agent_cert_fingerprint = models.CharField(max_length=64, blank=True)
    enrolled_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=8, choices=AgentStatus.choices, default=AgentStatus.UNKNOWN
    )
    last_seen_at = models.DateTimeField(null=True, blank=True)
    facts = models.JSONField(default=dict, blank=True)
    applied_hash = models.CharField(max_length=64, blank=True)
    applied_version = models.PositiveBigIntegerField(default=0)
    drifted = models.BooleanField(default=False)
    drift_diff = models.TextField(blank=True)
    console_seen_from = models.GenericIPAddressField(
        null=True, blank=True, help_text="the console's address as the agent last saw it"
    )

    # The per-device push lease (at most one push in flight per device).
    # A conditional UPDATE takes it, so it works on SQLite and PostgreSQL alike, and it
    # expires with the task time limit, so a killed worker never blocks a device for good.
    push_lease_owner = models.CharField(max_length=200, null=True, blank=True, editable=False)
    push_lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta(NamedModel.Meta):
        db_table = "agents_device"

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
        errors.update(probe_errors(self.probes))
        raise_if(errors)

    @property
    def default_policy(self) -> dict[str, str]:
        return {
            "input": self.default_input,
            "forward": self.default_forward,
            "output": self.default_output,
        }


class DeviceMembership(models.Model):
    device = models.ForeignKey("rules.Device", on_delete=models.CASCADE, related_name="group_links")
    group = models.ForeignKey(
        "rules.DeviceGroup", on_delete=models.PROTECT, related_name="device_links"
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "agents_devicemembership"
        ordering = ["device", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["device", "group"], name="devicemembership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.device} ∈ {self.group}"


class DeviceRuleSet(models.Model):
    device = models.ForeignKey(
        "rules.Device", on_delete=models.CASCADE, related_name="ruleset_links"
    )
    ruleset = models.ForeignKey(
        "rules.RuleSet", on_delete=models.PROTECT, related_name="device_links"
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "agents_deviceruleset"
        ordering = ["device", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["device", "ruleset"], name="deviceruleset_unique")
        ]

    def __str__(self) -> str:
        return f"{self.device} → {self.ruleset}"
