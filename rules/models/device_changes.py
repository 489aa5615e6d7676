"""Pending device changes: an edit of what a device enforces (default policies, management
sources, flags, rule sets, groups), or of a device group's rule sets, held for a second
person's approval.

A device whose rule sets require approval keeps its approved settings on its row (a group,
its approved rule sets); the requested change waits here, so every compile (candidate,
deployment, tracer) reads only approved settings until an approver who did not author the
change approves it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from rules.models.revisions import RevisionStatus


class DeviceChangeStatus(models.TextChoices):
    PENDING = RevisionStatus.PENDING.value, RevisionStatus.PENDING.label
    APPROVED = RevisionStatus.APPROVED.value, RevisionStatus.APPROVED.label
    REJECTED = RevisionStatus.REJECTED.value, RevisionStatus.REJECTED.label
    SUPERSEDED = RevisionStatus.SUPERSEDED.value, "superseded by a newer change"


class PendingDeviceChange(models.Model):
    """One requested change of a device's enforced settings (or a device group's rule sets),
    and its review.

    `before` and `after` hold only the fields the change touches (groups and rule sets as
    ordered lists of names, as the API and the policy document write them). A newer request
    for the same device or group folds the older pending one in (which is then superseded),
    and everyone who contributed is an author, none of whom may approve it.
    """

    device = models.ForeignKey(
        "rules.Device",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="pending_changes",
    )
    group = models.ForeignKey(
        "rules.DeviceGroup",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="pending_changes",
    )
    before = models.JSONField(default=dict, help_text="the approved values of the changed fields")
    after = models.JSONField(default=dict, help_text="the requested values of the changed fields")
    status = models.CharField(
        max_length=10, choices=DeviceChangeStatus.choices, default=DeviceChangeStatus.PENDING
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_name = models.CharField(max_length=150)
    authors = models.JSONField(
        default=list, blank=True, help_text="user ids of everyone whose request this contains"
    )
    reason = models.TextField(blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewer_name = models.CharField(max_length=150, blank=True)
    review_comment = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "pending device change"
        indexes = [
            models.Index(fields=["device", "status"], name="pendingdevicechange_status"),
            models.Index(fields=["group", "status"], name="pendinggroupchange_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(device__isnull=False, group__isnull=True)
                | models.Q(device__isnull=True, group__isnull=False),
                name="pendingdevicechange_one_target",
            )
        ]

    def __str__(self) -> str:
        return f"change of {self.target} ({self.status})"

    @property
    def target(self) -> models.Model | None:
        """The device, or the device group, the change is for."""
        return self.device if self.device_id is not None else self.group
