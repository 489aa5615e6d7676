"""The audit entry, the head of its chain, and the results of checking the chain."""

from __future__ import annotations

from django.db import models

from .choices import AuditChain, AuditChannel, VerifyTrigger

GENESIS_HASH = "0" * 64


class AuditEntry(models.Model):
    """One recorded event. Append-only: each row carries the previous row's hash and its own.

    No foreign keys on purpose: deleting a user or an object must never touch (cascade into,
    or null out) the record of what they did.
    """

    seq = models.PositiveBigIntegerField(
        unique=True, help_text="position in the hash chain, from 1"
    )
    time = models.DateTimeField(db_index=True)
    actor = models.CharField(
        max_length=150, db_index=True, help_text="username, or system:<task>, cli:<os user>"
    )
    user_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    token = models.CharField(
        max_length=32, blank=True, help_text="prefix of the API token used (never the key)"
    )
    action = models.CharField(max_length=32, db_index=True)
    object_type = models.CharField(max_length=100, blank=True, help_text="app_label.model")
    object_id = models.CharField(max_length=64, blank=True)
    object_name = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    changed = models.JSONField(
        default=list, blank=True, help_text="names of the fields that changed"
    )
    reason = models.TextField(blank=True)
    ticket = models.CharField(max_length=100, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    client_ip = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    channel = models.CharField(max_length=8, choices=AuditChannel.choices, db_index=True)
    extra = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 or keyed MAC")
    chain = models.PositiveSmallIntegerField(
        choices=AuditChain.choices,
        default=AuditChain.PLAIN,
        help_text="how `hash` seals the entry (core/audit/chain.py)",
    )

    class Meta:
        ordering = ["-seq"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"], name="auditentry_object")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.time:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_type} {self.object_name}"


class AuditChainHead(models.Model):
    """A single row (pk=1): the last sequence number and hash.

    Appenders lock it (UPDATE first, in the writer's transaction) so concurrent writers
    take turns and the chain never forks; `audit_verify` compares the chain's end to it,
    which catches deleted tail rows.
    """

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"audit chain head #{self.seq}"


class AuditVerification(models.Model):
    """The outcome of one check of the chain (`audit_verify`, the daily task, the API).

    A status for the overview and /metrics, not evidence: the evidence is the chain and
    the checkpoints kept outside the database.
    """

    time = models.DateTimeField(db_index=True)
    trigger = models.CharField(max_length=8, choices=VerifyTrigger.choices)
    ok = models.BooleanField()
    checked = models.PositiveBigIntegerField(default=0)
    break_count = models.PositiveBigIntegerField(default=0)
    breaks = models.JSONField(default=list, blank=True, help_text="the first breaks found")
    head_seq = models.PositiveBigIntegerField(null=True, blank=True)
    checkpoint_seq = models.PositiveBigIntegerField(null=True, blank=True)
    checkpoint_time = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(default=0.0, help_text="seconds")

    class Meta:
        ordering = ["-time"]

    def __str__(self) -> str:
        state = "ok" if self.ok else f"{self.break_count} breaks"
        return f"audit verification {self.time:%Y-%m-%d %H:%M:%S}: {state}"
