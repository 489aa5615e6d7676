"""Group members over HTTP (…/{id}/members/: paged GET, PATCH add/remove, PUT replace) and a
large group's export → import round trip."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.audit.models import AuditEntry
from core.audit.services import verify
from rules import services
from rules.exporter import export_document
from rules.importer import import_document
from rules.models import AddressGroup, AddressGroupMember, AddressObject, RuleSet
from rules.selectors import member_refs
from tests.support.addresses import host as literal

pytestmark = pytest.mark.django_db


@pytest.fixture
def group() -> AddressGroup:
    services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    g = services.object_save(AddressGroup(name="big"))
    services.address_group_set_members(group=g, members=["web-1", *map(literal, range(250))])
    return g


def url(group: AddressGroup) -> str:
    return reverse("addressgroup-members", args=[group.pk])


def test_members_are_paged(viewer_api, group):
    first = viewer_api.get(url(group), {"limit": 2}).json()
    assert first["count"] == 251
    assert first["results"] == [
        {"name": "web-1", "kind": "object"},
        {"name": "198.18.0.0", "kind": "literal"},
    ]
    page = viewer_api.get(url(group), {"limit": 100, "offset": 200}).json()
    assert [m["name"] for m in page["results"]] == list(map(literal, range(199, 250)))
    assert page["next"] is None


def test_patch_adds_and_removes_with_one_audit_entry(api, group):
    before = AuditEntry.objects.count()
    response = api.patch(
        url(group), {"add": ["198.18.9.9", "web-1"], "remove": [literal(3)]}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"added": ["198.18.9.9"], "removed": [literal(3)], "count": 251}
    members = member_refs(AddressGroupMember, [group.pk])[group.pk]
    assert members[-1] == "198.18.9.9" and literal(3) not in members
    new = AuditEntry.objects.filter(seq__gt=before)
    assert not new.filter(object_type="rules.addressgroupmember").exists()
    (entry,) = new.filter(object_type="rules.addressgroup", changed=["members"])
    assert entry.after == {"members": {"added": ["198.18.9.9"], "removed": [literal(3)]}}
    assert entry.channel == "api"
    assert verify()["ok"]
    again = api.patch(
        url(group), {"add": ["198.18.9.9"], "remove": [literal(3)]}, format="json"
    ).json()
    assert again == {"added": [], "removed": [], "count": 251}


def test_put_replaces_and_bad_names_are_400s(api, viewer_api, group):
    members = ["web-1", *map(literal, range(1, 250)), "198.18.7.7"]
    response = api.put(url(group), {"members": members}, format="json")
    assert response.json() == {"added": ["198.18.7.7"], "removed": [literal(0)], "count": 251}
    assert member_refs(AddressGroupMember, [group.pk])[group.pk] == members
    bad = api.patch(url(group), {"add": ["nosuch"]}, format="json")
    assert bad.status_code == 400
    assert "nosuch" in bad.json()["add"][0]
    assert viewer_api.patch(url(group), {"add": ["198.18.7.8"]}, format="json").status_code == 403


def test_group_detail_still_lists_every_member(viewer_api, group):
    body = viewer_api.get(reverse("addressgroup-detail", args=[group.pk])).json()
    assert body["members"] == ["web-1", *map(literal, range(250))]


def test_export_import_round_trip_of_a_5000_member_group(db):
    services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    g = services.object_save(AddressGroup(name="big"))
    members = [*map(literal, range(5000)), "web-1"]
    services.address_group_set_members(group=g, members=members)
    rs = services.object_save(RuleSet(name="uses-big"))
    services.rule_create(ruleset=rs, data={"sources": ["big"], "protocol": "tcp", "dports": ["22"]})
    doc = export_document()
    (exported,) = [x for x in doc["address_groups"] if x["name"] == "big"]
    assert exported["members"] == members
    plan = import_document(doc)
    assert not plan.changed  # importing the export changes nothing
    doc["address_groups"][0]["members"] = [*members[1:], "198.18.3.3"]
    before = AuditEntry.objects.count()
    import_document(doc)
    assert member_refs(AddressGroupMember, [g.pk])[g.pk] == [*members[1:], "198.18.3.3"]
    (entry,) = AuditEntry.objects.filter(seq__gt=before, changed=["members"])
    assert entry.after == {"members": {"added": ["198.18.3.3"], "removed": [literal(0)]}}
    assert [x for x in export_document()["address_groups"] if x["name"] == "big"][0]["members"] == [
        *members[1:],
        "198.18.3.3",
    ]
