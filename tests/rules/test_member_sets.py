"""Member sets: revision snapshots refer to group member lists by hash, and a group keeps
its members' keys as one set, so a change reads and writes one row, not 100,000.

What must hold: an old revision still deploys its old members; identical lists are stored
once; snapshots recorded inline still load (and the migration compacts them, keeping their
hashes); the kept set reads exactly as the rows do (renames included), and rows written
behind the service's back are noticed."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from core.audit.services import verify
from rules import revisions, services
from rules.exporter import export_document
from rules.member_sets import member_set_members
from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    MemberSet,
    RuleSet,
    RuleSetRevision,
    Service,
    ServiceGroup,
)
from rules.revisions.member_sets import snapshot_digest
from rules.selectors import group_member_names, member_refs, policy_dict
from tests.rules.revisions.support import device_with, latest
from tests.support.addresses import host as literal

pytestmark = pytest.mark.django_db

migration = importlib.import_module("rules.migrations.0011_member_sets")


@pytest.fixture
def used():
    """A rule set using group "big" (a nested group, an object and 2,000 literals)."""
    services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    services.object_save(AddressGroup(name="inner"))
    g = services.object_save(AddressGroup(name="big"))
    services.address_group_set_members(
        group=g, members=["web-1", "inner", *map(literal, range(2000))]
    )
    rs = services.object_save(RuleSet(name="uses-big"))
    services.rule_create(ruleset=rs, data={"sources": ["big"], "protocol": "tcp", "dports": ["22"]})
    return rs, g


def big_in(snapshot: dict) -> dict:
    (big,) = [g for g in snapshot["address_groups"] if g["name"] == "big"]
    return big


def test_snapshots_store_the_hash_and_resolve_to_the_members(used):
    rs, g = used
    rev = latest(rs)
    stored = big_in(rev.snapshot)
    assert "members" not in stored and len(stored["member_set"]) == 64
    assert big_in(revisions.revision_snapshot(rev))["members"] == group_member_names(g)
    assert rev.hash == revisions.snapshot_hash(revisions.revision_snapshot(rev))


def test_the_spliced_hash_is_the_hash_of_the_whole_snapshot():
    snapshot = {
        "ruleset": {"name": "x", "rules": []},
        "address_groups": [
            {"name": "a", "members": ["198.18.0.1", "b"], "description": "d\x00\u00e9"},
            {"name": "b", "members": []},
            {"name": "c", "member_set": "0" * 64},  # already compact: hashed as it is
        ],
        "service_groups": [{"name": "s", "members": ["https"]}],
        "addresses": [{"name": "z", "value": "198.18.0.9"}],
    }
    digest, encoded = snapshot_digest(snapshot)
    assert digest == revisions.snapshot_hash(snapshot)
    assert len(encoded) == 3


def test_an_old_revision_deploys_its_old_members_after_the_group_changed(used):
    rs, g = used
    old = latest(rs)
    services.group_members_change(group=g, add=["198.18.200.1"], remove=[literal(5)])
    new = latest(rs)
    assert new.number == old.number + 1
    device = device_with(rs)
    doc = revisions.deployable_document([device], revisions=[old])
    (ruleset,) = doc["rulesets"]
    (source,) = ruleset["rules"][0]["sources"]
    assert source != "big" and source.startswith("big.r")  # the old content, aliased
    groups = {x["name"]: x["members"] for x in doc["address_groups"]}
    assert literal(5) in groups[source] and "198.18.200.1" not in groups[source]
    assert "198.18.200.1" in groups["big"] and literal(5) not in groups["big"]
    diff = revisions.revision_diff(old, new)
    assert diff["objects"]["address_groups"]["changed"] == ["big"]


def test_identical_member_lists_are_stored_once(used):
    rs, g = used
    other = services.object_save(RuleSet(name="also-big"))
    services.rule_create(
        ruleset=other, data={"destinations": ["big"], "protocol": "tcp", "dports": ["80"]}
    )
    sets = MemberSet.objects.count()
    services.group_members_change(group=g, add=["198.18.200.1"])
    # the group's new keys and one names list, shared by both rule sets' new revisions
    assert MemberSet.objects.count() == sets + 2
    assert big_in(latest(rs).snapshot) == big_in(latest(other).snapshot)
    services.group_members_change(group=g, remove=["198.18.200.1"])  # back to an old list
    assert MemberSet.objects.count() == sets + 2
    assert (
        big_in(latest(rs).snapshot)["member_set"]
        == big_in(latest(rs).parent.parent.snapshot)["member_set"]
    )


def test_a_group_of_literals_shares_one_set_with_its_revisions(db):
    g = services.object_save(AddressGroup(name="lits"))
    services.address_group_set_members(group=g, members=[literal(i) for i in range(300)])
    rs = services.object_save(RuleSet(name="uses"))
    services.rule_create(ruleset=rs, data={"sources": ["lits"], "protocol": "tcp"})
    g.refresh_from_db()
    assert big_in_named(latest(rs).snapshot, "lits")["member_set"] == g.member_set


def big_in_named(snapshot: dict, name: str) -> dict:
    (found,) = [x for x in snapshot["address_groups"] if x["name"] == name]
    return found


def test_the_kept_set_reads_as_the_rows_do_renames_included(used):
    _, g = used
    services.group_members_change(group=g, add=["198.18.200.1"], remove=["inner", literal(0)])
    services.group_members_change(group=g, add=["inner"])
    g.refresh_from_db()
    assert g.member_set
    rows = member_refs(AddressGroupMember, [g.pk])[g.pk]
    assert group_member_names(g) == rows
    web = AddressObject.objects.get(name="web-1")
    web.name = "web-one"
    services.object_save(web)
    names = group_member_names(g)
    assert names[0] == "web-one" and names == member_refs(AddressGroupMember, [g.pk])[g.pk]
    (exported,) = [x for x in export_document()["address_groups"] if x["name"] == "big"]
    assert exported["members"] == names
    assert verify()["ok"]


def test_rows_written_behind_the_service_are_noticed(used):
    _, g = used
    services.group_members_change(group=g, add=["198.18.200.1"])
    g.refresh_from_db()
    # a bulk delete sends no signal and skips the service: the count no longer matches
    AddressGroupMember.objects.filter(group=g, literal=literal(7)).delete()
    assert literal(7) not in group_member_names(g)
    services.group_members_change(group=g, add=["198.18.200.2"])  # rebuilt from the rows
    assert group_member_names(g) == member_refs(AddressGroupMember, [g.pk])[g.pk]
    # one row saved on its own (the admin) forgets the set
    row = AddressGroupMember.objects.get(group=g, literal=literal(8))
    row.literal = "198.18.201.8"
    row.save()
    g.refresh_from_db()
    assert g.member_set == ""
    assert "198.18.201.8" in group_member_names(g)


def test_service_groups_keep_their_set_too(db):
    https = services.object_save(Service(name="https", protocol="tcp", ports=["443"]))
    ssh = services.object_save(Service(name="ssh", protocol="tcp", ports=["22"]))
    g = services.object_save(ServiceGroup(name="admin"))
    services.service_group_set_members(group=g, members=["https"])
    services.group_members_change(group=g, add=["ssh"])
    g.refresh_from_db()
    assert member_set_members(g.member_set) == (("o", https.pk), ("o", ssh.pk))
    (doc_group,) = policy_dict()["service_groups"]
    assert doc_group["members"] == ["https", "ssh"]


def test_inline_snapshots_still_load_and_the_migration_compacts_them(used):
    rs, _ = used
    rev = latest(rs)
    inline = revisions.revision_snapshot(rev)
    RuleSetRevision.objects.filter(pk=rev.pk).update(snapshot=inline)  # as recorded before
    old = RuleSetRevision.objects.get(pk=rev.pk)
    assert "members" in big_in(old.snapshot)
    assert revisions.revision_snapshot(old) == inline  # read as it is
    assert revisions.revision_diff(old, rev)["identical"]
    MemberSet.objects.all().delete()
    migration._compact_inline_snapshots(apps, None)
    migrated = RuleSetRevision.objects.get(pk=rev.pk)
    assert MemberSet.objects.filter(pk=big_in(migrated.snapshot)["member_set"]).exists()
    assert revisions.revision_snapshot(migrated) == inline
    assert migrated.hash == rev.hash == revisions.snapshot_hash(inline)
    migration._inline_member_sets(apps, None)  # and back
    assert RuleSetRevision.objects.get(pk=rev.pk).snapshot == inline


def test_removed_members_are_found_by_their_place_in_the_set(used):
    """Few removals read their rows by position; a member listed twice loses both rows."""
    _, g = used
    services.address_group_set_members(
        group=g, members=["web-1", literal(3), "inner", literal(3), *map(literal, range(10, 40))]
    )
    diff = services.group_members_change(group=g, remove=[literal(3), "web-1"])
    assert sorted(diff.removed) == sorted([literal(3), literal(3), "web-1"])
    assert diff.count == 31
    names = member_refs(AddressGroupMember, [g.pk])[g.pk]
    assert names == ["inner", *map(literal, range(10, 40))] == group_member_names(g)
    many = [literal(i) for i in range(10, 30)]  # more than a few: read by filter instead
    services.group_members_change(group=g, remove=many)
    assert member_refs(AddressGroupMember, [g.pk])[g.pk] == [
        "inner",
        *map(literal, range(30, 40)),
    ]
    assert group_member_names(g) == member_refs(AddressGroupMember, [g.pk])[g.pk]
