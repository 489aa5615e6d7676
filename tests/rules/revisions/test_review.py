"""Four-eyes review of pending revisions, and its API."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from core.audit.models import AuditEntry
from rules import revisions, services
from rules.models import (
    RevisionStatus,
    RuleSet,
    RuleSetRevision,
)
from tests.rules.revisions.support import as_user, edit_as, latest

pytestmark = pytest.mark.django_db


def test_edits_become_pending_and_only_approved_revisions_deploy(guarded, users, make_user):
    rs = guarded
    base = latest(rs)
    assert base.status == RevisionStatus.PENDING  # recorded before approval was switched on
    edit_as(users["operator"], rs, comment="one")
    pending = latest(rs)
    assert pending.status == RevisionStatus.PENDING and pending.author == users["operator"]
    base.refresh_from_db()
    assert base.status == RevisionStatus.SUPERSEDED  # the new pending change contains it
    assert revisions.deployable_revision(rs) is None  # nothing was ever approved
    with pytest.raises(PermissionDenied, match="you cannot review"):
        revisions.revision_approve(revision=pending, reviewer=users["operator"])
    with pytest.raises(PermissionDenied, match="only approvers"):
        revisions.revision_approve(revision=pending, reviewer=users["viewer"])
    approved = revisions.revision_approve(
        revision=pending, reviewer=users["approver"], comment="lgtm"
    )
    assert approved.status == RevisionStatus.APPROVED and approved.reviewer == users["approver"]
    assert revisions.deployable_revision(rs) == approved
    with pytest.raises(ValidationError):
        revisions.revision_approve(revision=approved, reviewer=users["admin"])
    entry = AuditEntry.objects.get(action="revision_approve")
    assert (entry.actor, entry.user_id) == ("approver", users["approver"].pk)
    assert entry.after == {"status": "approved", "comment": "lgtm"}


def test_a_change_edited_by_two_people_needs_a_third(guarded, users, make_user):
    rs = guarded
    edit_as(users["operator"], rs, comment="one")
    first = latest(rs)
    edit_as(users["approver"], rs, comment="two")
    second = latest(rs)
    first.refresh_from_db()
    assert first.status == RevisionStatus.SUPERSEDED
    assert set(second.authors) == {users["operator"].pk, users["approver"].pk}
    for author in (users["operator"], users["approver"]):
        with pytest.raises(PermissionDenied):
            revisions.revision_approve(revision=second, reviewer=author)
    with pytest.raises(ValidationError):  # superseded
        revisions.revision_approve(revision=first, reviewer=users["admin"])
    revisions.revision_approve(revision=second, reviewer=users["admin"])


def test_rejecting_needs_a_comment_and_keeps_the_approved_revision(guarded, users):
    rs = guarded
    edit_as(users["operator"], rs, comment="one")
    approved = revisions.revision_approve(revision=latest(rs), reviewer=users["approver"])
    edit_as(users["operator"], rs, action="drop", comment="everything")
    bad = latest(rs)
    with pytest.raises(ValidationError):
        revisions.revision_reject(revision=bad, reviewer=users["approver"], comment="")
    revisions.revision_reject(revision=bad, reviewer=users["approver"], comment="drops all traffic")
    assert revisions.deployable_revision(rs) == approved
    assert AuditEntry.objects.get(action="revision_reject").reason == "drops all traffic"


def test_switching_approval_on_holds_the_latest_draft_until_approved(policy, users):
    edit_as(users["operator"], policy, comment="one")
    edit_as(users["operator"], policy, comment="two")
    *_, older, draft = policy.revisions.order_by("number")
    assert draft.status == RevisionStatus.DRAFT
    assert revisions.deployable_revision(policy) == draft
    policy.requires_approval = True
    with as_user(users["operator"]):
        services.object_save(policy)
    draft.refresh_from_db()
    older.refresh_from_db()
    assert draft.status == RevisionStatus.PENDING and older.status == RevisionStatus.DRAFT
    assert revisions.deployable_revision(policy) is None
    assert not revisions.is_deployable(older, policy) and not revisions.is_deployable(draft, policy)
    entry = AuditEntry.objects.filter(object_type="rules.rulesetrevision", action="update").last()
    assert entry.object_id == str(draft.pk) and entry.after["status"] == "pending"
    approved = revisions.revision_approve(revision=draft, reviewer=users["approver"])
    assert revisions.deployable_revision(policy) == approved


def test_only_an_admin_can_turn_approval_off(guarded, users):
    rs = RuleSet.objects.get(pk=guarded.pk)
    rs.requires_approval = False
    with as_user(users["operator"]), pytest.raises(ValidationError, match="only an admin"):
        services.object_save(rs)
    with as_user(users["admin"]):
        services.object_save(rs)


def test_revision_api(guarded, users, api_client_for):
    rs = guarded
    base = latest(rs)
    edit_as(users["operator"], rs, comment="one")
    pending = latest(rs)
    viewer = api_client_for(users["viewer"])
    listed = viewer.get(f"/api/v1/rulesets/{rs.pk}/revisions/").json()["results"]
    assert [r["number"] for r in listed] == [pending.number, base.number]
    assert viewer.get("/api/v1/revisions/", {"status": "pending"}).json()["count"] == 1
    detail = viewer.get(f"/api/v1/revisions/{pending.pk}/").json()
    assert detail["snapshot"] == revisions.revision_snapshot(pending)
    diff = viewer.get(f"/api/v1/revisions/{pending.pk}/diff/", {"against": base.pk}).json()
    assert len(diff["rules"]["added"]) == 1
    assert viewer.post(f"/api/v1/revisions/{pending.pk}/approve/", {}).status_code == 403
    own = api_client_for(users["operator"]).post(f"/api/v1/revisions/{pending.pk}/approve/", {})
    assert own.status_code == 403
    author_as_approver = RuleSetRevision.objects.get(pk=pending.pk)
    assert author_as_approver.status == RevisionStatus.PENDING
    ok = api_client_for(users["approver"]).post(
        f"/api/v1/revisions/{pending.pk}/approve/", {"comment": "ok"}, format="json"
    )
    assert ok.status_code == 200 and ok.json()["status"] == "approved"
    back = api_client_for(users["operator"]).post(
        f"/api/v1/revisions/{base.pk}/rollback/", {}, format="json"
    )
    assert back.status_code == 201 and back.json()["status"] == "pending"
    assert rs.rules.count() == 0
