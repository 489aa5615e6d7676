"""The fleet's records: deployments and each device's part in them, per-rule traffic
counters, and one-time enrollment tokens. Devices themselves are policy targets and live
in `rules.models.devices`.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models

from .choices import DeploymentStatus, DeploymentTrigger, DeviceDeploymentState


class Deployment(models.Model):
    """One request to push policy to a set of devices, possibly in waves.

    The target is kept as it was asked for (devices / group / rule set) because group
    membership may change later; the devices actually chosen are the DeviceDeployments.
    """

    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="deployments",
    )
    trigger = models.CharField(
        max_length=8, choices=DeploymentTrigger.choices, default=DeploymentTrigger.MANUAL
    )
    target = models.JSONField(
        default=dict, help_text='{"kind": devices|device_group|ruleset, "ids": [...], "label": ...}'
    )
    revision = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="id of the rule set revision asked for (none: each rule set's deployable one)",
    )
    document = models.JSONField(
        null=True,
        blank=True,
        editable=False,
        help_text="the policy document every device of this deployment compiles from (snapshot at creation)",
    )
    revisions = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="the revision of every rule set the document holds: "
        "{rule set name: {id, number, hash, status}} (recorded when the document is frozen)",
    )
    confirm_timeout = models.PositiveIntegerField(
        default=30, help_text="seconds; 0 = no commit-confirmed"
    )
    rollout = models.JSONField(
        default=dict, blank=True, help_text="canary, wave_size | wave_percent, halt_on_failure"
    )
    probes = models.JSONField(
        null=True,
        blank=True,
        help_text="health probes for every device of it, in place of each device's own "
        "(null: each device's, from the frozen document)",
    )
    waves = models.JSONField(
        default=list, blank=True, help_text="per wave: index, size, state, started_at, finished_at"
    )
    current_wave = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=10, choices=DeploymentStatus.choices, default=DeploymentStatus.QUEUED
    )
    reason = models.CharField(
        max_length=255, blank=True, help_text="why it was started (as given; never overwritten)"
    )
    halt_reason = models.CharField(
        max_length=255,
        blank=True,
        help_text="why the rollout stopped (a failed wave, a cancel); cleared on resume",
    )
    events = models.JSONField(
        default=list,
        blank=True,
        help_text="halts, resumes and cancels in order: {event, at, by, wave, note}",
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status"], name="deployment_status_idx")]

    def __str__(self) -> str:
        return f"deployment #{self.pk} ({self.target.get('label', '')})"


class DeviceDeployment(models.Model):
    """One device's part of a deployment: its state machine and the agent's answer."""

    deployment = models.ForeignKey(
        "agents.Deployment", on_delete=models.CASCADE, related_name="device_deployments"
    )
    device = models.ForeignKey("rules.Device", on_delete=models.CASCADE, related_name="deployments")
    wave = models.PositiveIntegerField(default=0)
    state = models.CharField(
        max_length=12, choices=DeviceDeploymentState.choices, default=DeviceDeploymentState.QUEUED
    )
    version = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="bundle version sent to the agent"
    )
    bundle_hash = models.CharField(max_length=64, blank=True)
    settings = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="the device settings this deployment compiles for it (default policy, "
        "management sources, flags, groups, rule sets), as approved when it was created",
    )
    transitions = models.JSONField(
        default=list, blank=True, help_text="every state change: {state, at, note}"
    )
    attempts = models.PositiveIntegerField(default=0)
    # A worker's lease on the run (agents/services/sweeper.py): stamped when a worker takes
    # the task, so a queued one never taken and a run whose worker died can be told apart.
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="when a worker first took this device deployment's task"
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="when a worker last took or worked on it"
    )
    requeues = models.PositiveIntegerField(
        default=0, help_text="times the sweeper sent its task again (message lost)"
    )
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
        "agents.DeviceDeployment",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["deployment", "wave", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "device"], name="devicedeployment_unique"
            ),
        ]
        indexes = [models.Index(fields=["device", "state"], name="devicedeployment_dev_state_idx")]

    def __str__(self) -> str:
        return f"{self.device} in deployment #{self.deployment_id}: {self.state}"


class RuleCounter(models.Model):
    """Traffic totals per device and rule UUID that survive agent counter resets.

    The agent reports raw kernel counters, which drop to zero when chains are rewritten or
    the host reboots; `last_raw_*` is the baseline the next raw value grows from. A reset
    the agent reports (`counter_generation`, numbered per boot `counter_boot`) lowers the
    baseline by the counts the kernel lost, so the hits not polled before it are added by
    the next reading; the baseline is signed because it may drop below zero.
    """

    device = models.ForeignKey(
        "rules.Device", on_delete=models.CASCADE, related_name="rule_counters"
    )
    rule_uuid = models.UUIDField()
    packets = models.PositiveBigIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    last_raw_packets = models.BigIntegerField(default=0)
    last_raw_bytes = models.BigIntegerField(default=0)
    counter_boot = models.CharField(max_length=64, blank=True, default="")
    counter_generation = models.PositiveIntegerField(default=0)
    last_hit_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["device", "rule_uuid"]
        constraints = [
            models.UniqueConstraint(fields=["device", "rule_uuid"], name="rulecounter_unique")
        ]
        indexes = [models.Index(fields=["rule_uuid"], name="rulecounter_uuid_idx")]

    def __str__(self) -> str:
        return f"{self.device} {self.rule_uuid}: {self.packets} packets"


class EnrollmentToken(models.Model):
    """A one-time, expiring secret that lets one agent enroll as one device.

    Only a SHA-256 of the token is stored (like a password), with a short prefix to tell
    tokens apart in listings; the token itself is shown once, when made.
    """

    device = models.ForeignKey(
        "rules.Device", on_delete=models.CASCADE, related_name="enrollment_tokens"
    )
    digest = models.CharField(max_length=64, unique=True, help_text="sha256 hex of the token")
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    #: Every token starts with this, so a token pasted in the wrong place is recognisable.
    PREFIX = "rpt-enroll-"

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"enrollment token {self.prefix}… for {self.device}"

    @staticmethod
    def digest_of(token: str) -> str:
        """The stored form of a clear-text token (SHA-256 hex)."""
        return hashlib.sha256(token.encode()).hexdigest()


class DevicePoll(models.Model):
    """When a device's status poll is due next, and the agent's status generation it last
    answered (sent back as `since=G`: the agent then answers "unchanged" cheaply).

    Kept out of `rules.Device` so a poll writes this small row, not the device's.
    """

    device = models.OneToOneField(
        "rules.Device", on_delete=models.CASCADE, primary_key=True, related_name="poll"
    )
    next_poll_at = models.DateTimeField(db_index=True)
    generation = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.device_id}: next poll {self.next_poll_at}, generation {self.generation}"
