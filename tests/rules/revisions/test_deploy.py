"""Which revision deploys, and the document a deployment compiles."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from rules import revisions, services
from rules.models import (
    AddressObject,
    RuleSet,
)
from tests.rules.revisions.support import device_with, edit_as, latest

pytestmark = pytest.mark.django_db


def test_deployable_document_uses_the_approved_content_and_its_objects(guarded, users):
    rs = guarded
    edit_as(users["operator"], rs, destinations=["web"], services=["https"])
    revisions.revision_approve(revision=latest(rs), reviewer=users["approver"])
    edit_as(users["operator"], rs, action="drop")  # pending, not approved
    web1 = AddressObject.objects.get(name="web-1")
    web1.value = "198.18.1.99"  # changes a shared object after the approval
    services.object_save(web1)
    doc = revisions.deployable_document([device_with(rs)])
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
    device = device_with(rs)
    with pytest.raises(ValidationError, match="no approved revision"):
        revisions.deployable_document([device])
    with pytest.raises(ValidationError, match="only approved"):
        revisions.deployable_document([device], revisions=[latest(rs)])


def test_a_chosen_older_revision_deploys(policy):
    rs = policy
    services.rule_create(ruleset=rs, data={"comment": "v1"})
    v1 = latest(rs)
    services.rule_create(ruleset=rs, data={"comment": "v2"})
    device = device_with(rs)
    assert len(revisions.deployable_document([device])["rulesets"][0]["rules"]) == 2
    assert len(revisions.deployable_document([device], revisions=[v1])["rulesets"][0]["rules"]) == 1


def test_a_zone_change_is_a_rule_set_change_under_four_eyes(guarded, users):
    """Zones are part of what a rule set means: an unapproved change of a zone's interfaces
    makes a pending revision, and the deployable document keeps the approved interfaces."""
    from rules.models import Zone
    from rules.services.zones import zone_save

    zone = zone_save(Zone(name="lan", interfaces=["eth0"]))
    rs = guarded
    edit_as(users["operator"], rs, chain="input", in_zone="lan")
    revisions.revision_approve(revision=latest(rs), reviewer=users["approver"])
    approved = latest(rs)
    zone.interfaces = ["eth0", "eth9"]
    zone_save(zone)
    assert latest(rs).number == approved.number + 1 and latest(rs).status == "pending"
    device = device_with(rs)
    doc = revisions.deployable_document([device])
    (ruleset,) = doc["rulesets"]
    (rule,) = ruleset["rules"]
    assert rule["in_zone"] != "lan" and rule["in_zone"].startswith("lan.r")
    zones = {z["name"]: z["interfaces"] for z in doc["zones"]}
    assert zones[rule["in_zone"]] == ["eth0"] and zones["lan"] == ["eth0", "eth9"]
    from compiler import PolicyDocument

    PolicyDocument.from_dict(doc)  # the compiler's parser accepts the alias
    revisions.revision_approve(revision=latest(rs), reviewer=users["approver"])
    (ruleset,) = revisions.deployable_document([device])["rulesets"]
    assert ruleset["rules"][0]["in_zone"] == "lan"
