"""Group members as sets (rules.services.group_members): the diff semantics, the one audit
entry per change, the chain still verifying, and member writes that touch only the rows
that changed."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from core.audit.models import AuditEntry
from core.audit.services import verify
from rules import revisions, services
from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    RuleSet,
    Service,
    ServiceGroup,
)
from rules.selectors import member_refs

pytestmark = pytest.mark.django_db


def members_of(group) -> list[str]:
    return member_refs(AddressGroupMember, [group.pk]).get(group.pk, [])


def row_ids(group) -> dict[str, int]:
    return {
        m.ref: m.pk
        for m in AddressGroupMember.objects.filter(group=group).select_related(
            "address", "subgroup"
        )
    }


@pytest.fixture
def group() -> AddressGroup:
    services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    services.object_save(AddressGroup(name="inner"))
    g = services.object_save(AddressGroup(name="big"))
    services.address_group_set_members(
        group=g, members=["web-1", "inner", "198.18.0.1", "198.18.0.2", "198.18.0.3"]
    )
    return g


def member_entries(group) -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(
            object_type="rules.addressgroup", object_id=str(group.pk), changed=["members"]
        ).order_by("seq")
    )


def test_change_adds_and_removes_exactly_those(group):
    kept = row_ids(group)
    diff = services.group_members_change(
        group=group, add=["198.18.0.9", "web-1"], remove=["198.18.0.2", "inner", "198.18.7.7"]
    )
    assert diff.added == ["198.18.0.9"]  # web-1 was already there
    assert diff.removed == ["inner", "198.18.0.2"]  # 198.18.7.7 was not there
    assert members_of(group) == ["web-1", "198.18.0.1", "198.18.0.3", "198.18.0.9"]
    after = row_ids(group)
    for ref in ("web-1", "198.18.0.1", "198.18.0.3"):
        assert after[ref] == kept[ref]  # kept rows are not rewritten


def test_change_is_idempotent(group):
    services.group_members_change(group=group, add=["198.18.0.9"], remove=["198.18.0.1"])
    before = members_of(group), AuditEntry.objects.count()
    diff = services.group_members_change(group=group, add=["198.18.0.9"], remove=["198.18.0.1"])
    assert not diff.changed
    assert (members_of(group), AuditEntry.objects.count()) == before


def test_change_refuses_unknown_names_cycles_and_contradictions(group):
    outer = services.object_save(AddressGroup(name="outer"))
    services.group_members_change(group=outer, add=["big"])
    with pytest.raises(ValidationError) as exc:
        services.group_members_change(group=group, add=["nope", "outer", "big"])
    messages = exc.value.message_dict["add"]
    assert any("nope" in m for m in messages)
    assert any("'outer' contains 'big'" in m for m in messages)
    assert any("'big' contains 'big'" in m for m in messages)
    with pytest.raises(ValidationError) as exc:
        services.group_members_change(group=group, add=["198.18.0.8"], remove=["198.18.0.8"])
    assert "remove" in exc.value.message_dict
    assert "198.18.0.8" not in members_of(group)


def test_set_writes_only_the_difference(group):
    kept = row_ids(group)
    diff = services.address_group_set_members(
        group=group, members=["web-1", "inner", "198.18.0.1", "198.18.0.3", "198.18.0.4"]
    )
    assert (diff.added, diff.removed) == (["198.18.0.4"], ["198.18.0.2"])
    after = row_ids(group)
    assert {ref: after[ref] for ref in kept if ref in after} == {
        ref: pk for ref, pk in kept.items() if ref != "198.18.0.2"
    }
    assert members_of(group) == ["web-1", "inner", "198.18.0.1", "198.18.0.3", "198.18.0.4"]


def test_set_keeps_the_given_order(group):
    diff = services.address_group_set_members(
        group=group, members=["198.18.0.3", "198.18.0.5", "web-1"]
    )
    assert diff.added == ["198.18.0.5"]
    assert sorted(diff.removed) == ["198.18.0.1", "198.18.0.2", "inner"]
    assert members_of(group) == ["198.18.0.3", "198.18.0.5", "web-1"]
    assert not services.address_group_set_members(
        group=group, members=["198.18.0.3", "198.18.0.5", "web-1"]
    ).changed


def test_set_keeps_a_member_listed_twice(group):
    """A document may list a member twice: it round-trips as written."""
    members = ["web-1", "198.18.0.1", "web-1"]
    diff = services.address_group_set_members(group=group, members=members)
    assert diff.added == ["web-1"]
    assert members_of(group) == members
    assert not services.address_group_set_members(group=group, members=members).changed
    diff = services.address_group_set_members(group=group, members=["web-1", "198.18.0.1"])
    assert (diff.added, diff.removed) == ([], ["web-1"])
    assert members_of(group) == ["web-1", "198.18.0.1"]


def test_one_audit_entry_per_change_listing_the_members(group):
    before = AuditEntry.objects.count()
    services.group_members_change(group=group, add=["198.18.0.9", "198.18.0.10"], remove=["inner"])
    entries = list(AuditEntry.objects.filter(seq__gt=before).order_by("seq"))
    member_rows = [e for e in entries if e.object_type == "rules.addressgroupmember"]
    assert member_rows == []  # no per-member entries
    (entry,) = member_entries(group)[-1:]
    assert entry.seq > before
    assert entry.action == "update"
    assert entry.object_name == "big"
    assert entry.after == {
        "members": {"added": ["198.18.0.9", "198.18.0.10"], "removed": ["inner"]}
    }
    assert verify()["ok"]


def test_creating_a_group_writes_one_member_entry(db):
    services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    g = services.object_save(AddressGroup(name="many"))
    literals = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(1000)]
    before = AuditEntry.objects.count()
    services.address_group_set_members(group=g, members=literals)
    assert (
        AuditEntry.objects.filter(seq__gt=before, object_type="rules.addressgroupmember").count()
        == 0
    )
    (entry,) = member_entries(g)
    assert entry.after["members"]["added"] == literals
    assert entry.after["members"]["removed"] == []
    assert verify()["ok"]


def test_service_groups_are_sets_too(db):
    services.object_save(Service(name="https", protocol="tcp", ports=["443"]))
    services.object_save(Service(name="ssh", protocol="tcp", ports=["22"]))
    g = services.object_save(ServiceGroup(name="admin"))
    services.service_group_set_members(group=g, members=["https"])
    diff = services.group_members_change(group=g, add=["ssh", "https"], remove=[])
    assert diff.added == ["ssh"]
    assert [m.ref for m in g.members.all()] == ["https", "ssh"]


def test_a_member_change_captures_only_the_rule_sets_using_the_group(group):
    user = services.object_save(RuleSet(name="uses"))
    other = services.object_save(RuleSet(name="other"))
    services.rule_create(
        ruleset=user, data={"sources": ["big"], "protocol": "tcp", "dports": ["22"]}
    )
    services.rule_create(ruleset=other, data={"protocol": "tcp", "dports": ["80"]})
    revs = {rs.name: rs.revisions.count() for rs in (user, other)}
    services.group_members_change(group=group, add=["198.18.0.42"])
    assert user.revisions.count() == revs["uses"] + 1
    assert other.revisions.count() == revs["other"]
    snap = revisions.revision_snapshot(user.revisions.order_by("-number").first())
    (big,) = [g for g in snap["address_groups"] if g["name"] == "big"]
    assert "198.18.0.42" in big["members"]
    # nested and member objects are in the snapshot; the other rule set's is untouched by the group
    assert {g["name"] for g in snap["address_groups"]} == {"big", "inner"}
    assert [a["name"] for a in snap["addresses"]] == ["web-1"]
    other_snap = other.revisions.order_by("-number").first().snapshot
    assert other_snap["address_groups"] == [] and other_snap["addresses"] == []
