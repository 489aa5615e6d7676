"""Four-eyes review: an approver who is not one of the change's authors approves or rejects a
pending revision; only admins may turn a rule set's approval requirement off, and turning it
on puts the latest revision up for approval."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from core.accounts import roles
from core.audit.choices import AuditAction
from core.audit.context import current, current_user
from core.audit.services import record
from rules.models import RevisionStatus, RuleSet, RuleSetRevision


def guard_ruleset_save(ruleset: RuleSet) -> None:
    """Turning approval off would let one person change and deploy alone: admins only.
    Turning it on holds the latest revision (recorded while none was needed) for approval."""
    if ruleset.pk is None:
        return
    was = RuleSet.objects.filter(pk=ruleset.pk).values_list("requires_approval", flat=True).first()
    if ruleset.requires_approval:
        if was is False:
            hold_latest_draft(ruleset)
        return
    user = current_user()
    if was and user is not None and not roles.has_any(user, roles.CAN_ADMINISTER):
        raise ValidationError({"requires_approval": ["only an admin can turn approval off"]})


def hold_latest_draft(ruleset: RuleSet) -> RuleSetRevision | None:
    """Make the latest revision pending when it is a draft: content recorded before approval
    was switched on deploys only once someone approves it (older drafts never deploy)."""
    latest = ruleset.revisions.select_for_update().order_by("-number").first()
    if latest is None or latest.status != RevisionStatus.DRAFT:
        return None
    latest.status = RevisionStatus.PENDING
    latest.save(update_fields=["status"])
    return latest


def _check_reviewer(revision: RuleSetRevision, reviewer) -> None:
    if reviewer is None or not getattr(reviewer, "is_authenticated", False):
        raise PermissionDenied("a signed-in approver must review a change")
    if reviewer.pk == revision.author_id or reviewer.pk in (revision.authors or []):
        raise PermissionDenied("you cannot review a change you made: another approver must")
    if not roles.has_any(reviewer, roles.CAN_APPROVE):
        raise PermissionDenied("only approvers can review changes")
    if revision.status != RevisionStatus.PENDING:
        raise ValidationError(
            {"status": [f"revision r{revision.number} is {revision.status}, not pending"]}
        )


def _review(
    *, revision: RuleSetRevision, reviewer, comment: str, status: str, action: str
) -> RuleSetRevision:
    revision = RuleSetRevision.objects.select_for_update().get(pk=revision.pk)
    _check_reviewer(revision, reviewer)
    before = {"status": revision.status}
    revision.status = status
    revision.reviewer = reviewer
    revision.reviewer_name = reviewer.get_username()
    revision.review_comment = comment
    revision.reviewed_at = timezone.now()
    revision.save(
        update_fields=["status", "reviewer", "reviewer_name", "review_comment", "reviewed_at"]
    )
    record(
        action,
        revision,
        before=before,
        after={"status": status, "comment": comment},
        reason=current().reason or comment,
        user=reviewer,
    )
    return revision


@transaction.atomic
def revision_approve(*, revision: RuleSetRevision, reviewer, comment: str = "") -> RuleSetRevision:
    """Approve a pending change; its author(s) cannot. Only approved revisions deploy."""
    return _review(
        revision=revision,
        reviewer=reviewer,
        comment=comment,
        status=RevisionStatus.APPROVED,
        action=AuditAction.REVISION_APPROVE,
    )


@transaction.atomic
def revision_reject(*, revision: RuleSetRevision, reviewer, comment: str) -> RuleSetRevision:
    """Reject a pending change (a comment saying why is required). The working copy keeps the
    edit; deployments keep using the last approved revision."""
    if not (comment or "").strip():
        raise ValidationError({"comment": ["say why the change is rejected"]})
    return _review(
        revision=revision,
        reviewer=reviewer,
        comment=comment,
        status=RevisionStatus.REJECTED,
        action=AuditAction.REVISION_REJECT,
    )
