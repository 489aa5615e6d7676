"""Capturing revisions: one per change (or per batch), with every object the rule set uses."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from core.audit.context import audit_context
from core.audit.models import AuditEntry
from rules import revisions, services
from rules.models import (
    AddressGroup,
    AddressObject,
    RevisionStatus,
    Rule,
    RuleSet,
)
from tests.rules.revisions.support import latest

pytestmark = pytest.mark.django_db


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
    assert rev.hash == revisions.snapshot_hash(revisions.revision_snapshot(rev))  # members inline
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


def test_revision_content_is_immutable(policy):
    rev = latest(policy)
    rev.message = "rewritten"
    with pytest.raises(ValidationError):
        rev.save()


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
