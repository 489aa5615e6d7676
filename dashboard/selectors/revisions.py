"""Rule set revisions and pending approvals as the revision pages show them."""

from __future__ import annotations

from django.db.models import QuerySet

from rules.models import (
    DeviceChangeStatus,
    PendingDeviceChange,
    RevisionStatus,
    RuleSet,
    RuleSetRevision,
)


def revision_list(*, ruleset: RuleSet | None = None, pending: bool = False) -> QuerySet:
    """Revisions newest first, without their (large) snapshots."""
    revisions = (
        RuleSetRevision.objects.select_related("ruleset")
        .defer("snapshot")
        .order_by("-created", "-id")
    )
    if ruleset is not None:
        revisions = revisions.filter(ruleset=ruleset)
    if pending:
        revisions = revisions.filter(status=RevisionStatus.PENDING)
    return revisions


def revision_detail() -> QuerySet:
    """Revisions with what the detail page shows (get one by pk)."""
    return RuleSetRevision.objects.select_related("ruleset", "parent")


def revision_of(ruleset: RuleSet) -> QuerySet:
    """The rule set's revisions (get one by pk to diff against)."""
    return RuleSetRevision.objects.filter(ruleset=ruleset)


def revision_latest(ruleset: RuleSet) -> RuleSetRevision | None:
    return ruleset.revisions.order_by("-number").first()


def revision_others(ruleset: RuleSet, limit: int = 50) -> QuerySet:
    """The rule set's revisions, newest first, to pick one to compare with."""
    return ruleset.revisions.defer("snapshot").order_by("-number")[:limit]


def pending_approval_count() -> int:
    """Pending changes (revisions and device changes) waiting for an approver (shown in the
    navigation)."""
    return (
        RuleSetRevision.objects.filter(status=RevisionStatus.PENDING).count()
        + PendingDeviceChange.objects.filter(status=DeviceChangeStatus.PENDING).count()
    )


def device_changes_pending() -> QuerySet:
    """Device changes waiting for an approver, oldest first (the approvals page)."""
    return (
        PendingDeviceChange.objects.filter(status=DeviceChangeStatus.PENDING)
        .select_related("device", "group")
        .order_by("created", "id")
    )
