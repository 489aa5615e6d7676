"""Rule set revisions: capture, diff, rollback, four-eyes approval, the document to deploy."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from core.audit.context import AuditContext, audit_context, reset_context, set_context
from core.audit.models import AuditEntry
from rules import revisions, services
from rules.models import (
    AddressGroup,
    AddressObject,
    RevisionStatus,
    Rule,
    RuleSet,
    RuleSetRevision,
    Service,
)

pytestmark = pytest.mark.django_db


@contextmanager
def as_user(user):
    """Act as `user`, as the middleware does for one of their requests."""
    token = set_context(
        AuditContext(channel="ui", request=SimpleNamespace(user=user), request_id="test")
    )
    try:
        yield
    finally:
        reset_context(token)


@pytest.fixture
def policy():
    services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    services.object_save(AddressObject(name="office", value="198.18.0.0/24"))
    group = services.object_save(AddressGroup(name="web"))
    services.address_group_set_members(group=group, members=["web-1"])
    services.object_save(Service(name="https", protocol="tcp", ports=["443"]))
    services.object_save(Service(name="dns", protocol="udp", ports=["53"]))
    rs = services.object_save(RuleSet(name="edge"))
    return rs


def latest(rs: RuleSet) -> RuleSetRevision:
    return rs.revisions.order_by("-number").first()


def test_each_change_makes_one_revision_with_the_referenced_objects(policy):
    rs = policy
    assert rs.revisions.count() == 1 and latest(rs).snapshot["ruleset"]["rules"] == []
    rule = services.rule_create(
        ruleset=rs, data={"sources": ["office"], "destinations": ["web"], "services": ["https"]}
    )
    services.rule_create(
        ruleset=rs, data={"action": "drop"}, position=1
    )  # create + move: one revision
    assert rs.revisions.count() == 3
    rev = latest(rs)
    assert rev.parent.number == 2 and rev.status == RevisionStatus.DRAFT
    assert [r["id"] for r in rev.snapshot["ruleset"]["rules"]][1] == str(rule.uuid)
    assert [a["name"] for a in rev.snapshot["addresses"]] == [
        "office",
        "web-1",
    ]  # web-1 through the group
    assert [g["name"] for g in rev.snapshot["address_groups"]] == ["web"]
    assert [s["name"] for s in rev.snapshot["services"]] == ["https"]  # dns is not used
    assert rev.hash == revisions.snapshot_hash(rev.snapshot)
    services.rule_update(
        rule=Rule.objects.get(pk=rule.pk), data={"comment": ""}
    )  # no content change
    assert rs.revisions.count() == 3


def test_a_referenced_object_change_revises_every_rule_set_using_it(policy):
    other = services.object_save(RuleSet(name="other"))
    services.rule_create(ruleset=policy, data={"destinations": ["web"]})
    services.rule_create(ruleset=other, data={"destinations": ["office"]})
    counts = (policy.revisions.count(), other.revisions.count())
    web1 = AddressObject.objects.get(name="web-1")
    web1.value = "198.18.1.99"
    services.object_save(web1)
    assert (policy.revisions.count(), other.revisions.count()) == (counts[0] + 1, counts[1])
    assert latest(policy).snapshot["addresses"][0]["value"] == "198.18.1.99"


def test_one_api_call_makes_one_revision_like_one_ui_action(policy, api):
    services.rule_create(ruleset=policy, data={"destinations": ["web"]})
    before = policy.revisions.count()
    group = AddressGroup.objects.get(name="web")
    response = api.patch(
        f"/api/v1/address-groups/{group.pk}/",
        {"description": "the web tier", "members": ["web-1", "198.18.1.11"]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert policy.revisions.count() == before + 1  # description and members: one call, one revision
    assert [a["name"] for a in latest(policy).snapshot["address_groups"]] == ["web"]


def test_bulk_writes_make_one_revision(policy):
    before = policy.revisions.count()
    services.rules_bulk(ruleset=policy, create=[{"comment": f"r{i}"} for i in range(20)])
    assert policy.revisions.count() == before + 1
    assert len(latest(policy).snapshot["ruleset"]["rules"]) == 20


def test_diff_reports_added_removed_changed_and_moved(policy):
    rs = policy
    a = services.rule_create(ruleset=rs, data={"comment": "a"})
    b = services.rule_create(ruleset=rs, data={"comment": "b"})
    c = services.rule_create(ruleset=rs, data={"comment": "c"})
    old = latest(rs)
    services.rule_update(rule=b, data={"action": "drop", "services": ["https"]})
    services.rule_delete(rule=a)
    services.rule_move(rule=Rule.objects.get(pk=c.pk), position=1)
    d = services.rule_create(ruleset=rs, data={"comment": "d"})
    diff = revisions.revision_diff(old, latest(rs))
    rules = diff["rules"]
    assert [x["id"] for x in rules["added"]] == [str(d.uuid)]
    assert [x["id"] for x in rules["removed"]] == [str(a.uuid)]
    assert rules["changed"] == [
        {
            "id": str(b.uuid),
            "fields": ["action", "services"],
            "before": {"action": "accept", "services": None},
            "after": {"action": "drop", "services": ["https"]},
        }
    ]
    assert [(m["id"], m["from"], m["to"]) for m in rules["moved"]] in (
        [(str(c.uuid), 3, 1)],
        [(str(b.uuid), 2, 2)],
    )
    assert diff["objects"]["services"]["added"] == ["https"]
    assert not diff["identical"]


def test_rollback_restores_rows_and_records_a_new_revision(policy):
    rs = policy
    services.rule_create(
        ruleset=rs, data={"destinations": ["web"], "services": ["https"], "comment": "keep"}
    )
    good = latest(rs)
    services.rules_bulk(ruleset=rs, create=[{"action": "drop"}], delete=[rs.rules.get().pk])
    assert latest(rs).hash != good.hash
    new = revisions.revision_rollback(revision=good)
    assert (
        new.hash == good.hash
        and new.number == good.number + 2
        and new.parent.number == good.number + 1
    )
    assert revisions.ruleset_snapshot(rs) == good.snapshot  # rows are back, same uuids
    assert AuditEntry.objects.filter(action="revision_rollback", object_id=str(new.pk)).exists()
    assert rs.revisions.count() == good.number + 2  # the restore itself made no extra revisions


def test_a_deleted_object_comes_back_on_rollback(policy):
    rs = policy
    services.object_save(AddressObject(name="tmp", value="198.18.9.9"))
    rule = services.rule_create(ruleset=rs, data={"sources": ["tmp"]})
    old = latest(rs)
    services.rule_delete(rule=rule)
    services.object_delete(AddressObject.objects.get(name="tmp"))
    revisions.revision_rollback(revision=old)
    assert AddressObject.objects.get(name="tmp").value == "198.18.9.9"
    assert revisions.ruleset_snapshot(rs) == old.snapshot


# --- four eyes ------------------------------------------------------------------------------------


@pytest.fixture
def guarded(policy, users, make_user):
    policy.requires_approval = True
    services.object_save(policy)
    make_user("approver2", "approver")
    return policy


def edit_as(user, rs, **data):
    with as_user(user):
        return services.rule_create(ruleset=rs, data=data)


def test_edits_become_pending_and_only_approved_revisions_deploy(guarded, users, make_user):
    rs = guarded
    base = latest(rs)
    edit_as(users["operator"], rs, comment="one")
    pending = latest(rs)
    assert pending.status == RevisionStatus.PENDING and pending.author == users["operator"]
    assert revisions.deployable_revision(rs) == base  # the draft recorded before approval was on
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


def test_only_an_admin_can_turn_approval_off(guarded, users):
    rs = RuleSet.objects.get(pk=guarded.pk)
    rs.requires_approval = False
    with as_user(users["operator"]), pytest.raises(ValidationError, match="only an admin"):
        services.object_save(rs)
    with as_user(users["admin"]):
        services.object_save(rs)


# --- deployment ---------------------------------------------------------------------------------


def _device(*rulesets):
    from rules.models import Device, DeviceRuleSet

    device = Device.objects.create(name="fw-1", address="198.18.0.2")
    for i, rs in enumerate(rulesets):
        DeviceRuleSet.objects.create(device=device, ruleset=rs, position=i)
    return device


def test_deployable_document_uses_the_approved_content_and_its_objects(guarded, users):
    rs = guarded
    edit_as(users["operator"], rs, destinations=["web"], services=["https"])
    revisions.revision_approve(revision=latest(rs), reviewer=users["approver"])
    edit_as(users["operator"], rs, action="drop")  # pending, not approved
    web1 = AddressObject.objects.get(name="web-1")
    web1.value = "198.18.1.99"  # changes a shared object after the approval
    services.object_save(web1)
    doc = revisions.deployable_document([_device(rs)])
    (ruleset,) = doc["rulesets"]
    assert [r.get("action") for r in ruleset["rules"]] == ["accept"]
    (dest,) = ruleset["rules"][0]["destinations"]
    assert dest != "web" and dest.startswith("web.r")  # the approved group, under an alias
    group = next(g for g in doc["address_groups"] if g["name"] == dest)
    (member,) = group["members"]
    assert next(a for a in doc["addresses"] if a["name"] == member)["value"] == "198.18.1.10"
    assert next(a for a in doc["addresses"] if a["name"] == "web-1")["value"] == "198.18.1.99"
    from compiler import PolicyDocument

    PolicyDocument.from_dict(doc)  # the compiler's parser accepts it


def test_deploying_needs_an_approved_revision(users):
    rs = services.object_save(RuleSet(name="locked", requires_approval=True))
    device = _device(rs)
    with pytest.raises(ValidationError, match="no approved revision"):
        revisions.deployable_document([device])
    with pytest.raises(ValidationError, match="only approved"):
        revisions.deployable_document([device], revisions=[latest(rs)])


def test_a_chosen_older_revision_deploys(policy):
    rs = policy
    services.rule_create(ruleset=rs, data={"comment": "v1"})
    v1 = latest(rs)
    services.rule_create(ruleset=rs, data={"comment": "v2"})
    device = _device(rs)
    assert len(revisions.deployable_document([device])["rulesets"][0]["rules"]) == 2
    assert len(revisions.deployable_document([device], revisions=[v1])["rulesets"][0]["rules"]) == 1


def test_revision_content_is_immutable(policy):
    rev = latest(policy)
    rev.message = "rewritten"
    with pytest.raises(ValidationError):
        rev.save()


# --- API ------------------------------------------------------------------------------------------


def test_revision_api(guarded, users, api_client_for):
    rs = guarded
    base = latest(rs)
    edit_as(users["operator"], rs, comment="one")
    pending = latest(rs)
    viewer = api_client_for(users["viewer"])
    listed = viewer.get(f"/api/v1/rulesets/{rs.pk}/revisions/").json()["results"]
    assert [r["number"] for r in listed] == [pending.number, base.number]
    assert viewer.get("/api/v1/revisions/", {"status": "pending"}).json()["count"] == 1
    assert viewer.get(f"/api/v1/revisions/{pending.pk}/").json()["snapshot"] == pending.snapshot
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


def test_system_tasks_author_revisions(policy):
    with audit_context(actor="system:import", channel="system"):
        services.rule_create(ruleset=policy, data={"comment": "x"})
    rev = latest(policy)
    assert rev.author is None and rev.author_name == "system:import"


def test_nat_rules_and_their_addresses_are_part_of_the_revision(policy):
    from rules.models import NatRule

    before = latest(policy)
    nat = services.object_save(
        NatRule(ruleset=policy, type="masquerade", out_interface="eth0", sources=["office"])
    )
    rev = latest(policy)
    assert rev.number == before.number + 1
    assert rev.snapshot["ruleset"]["nat"][0]["id"] == str(nat.uuid)
    assert [a["name"] for a in rev.snapshot["addresses"]] == ["office"]
    assert [n["id"] for n in revisions.revision_diff(before, rev)["nat"]["added"]] == [
        str(nat.uuid)
    ]
    services.object_delete(nat)
    assert "nat" not in latest(policy).snapshot["ruleset"]


def test_an_api_edit_is_audited_and_revised_as_its_user(policy, users, api_client_for):
    client = api_client_for(users["operator"])
    response = client.post(
        "/api/v1/rules/",
        {"ruleset": policy.pk, "action": "drop", "destinations": ["web"]},
        format="json",
        HTTP_X_RAMPART_REASON="block web",
        HTTP_X_RAMPART_TICKET="CHG-9",
    )
    assert response.status_code == 201, response.content
    rev = latest(policy)
    assert (rev.author, rev.message) == (users["operator"], "block web")
    created = AuditEntry.objects.get(action="create", object_type="rules.rule")
    assert (created.actor, created.channel, created.ticket) == ("operator", "api", "CHG-9")
    assert created.token.startswith("knox:")
    bad = client.post(
        "/api/v1/rules/",
        {"ruleset": policy.pk, "protocol": "tcp", "dports": ["70000"]},
        format="json",
    )
    assert bad.status_code == 400
    assert (
        AuditEntry.objects.filter(object_type="rules.rule").count()
        == AuditEntry.objects.filter(
            object_type="rules.rule", request_id=created.request_id
        ).count()
    )
