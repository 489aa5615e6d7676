"""Group pages with many members: the list shows a preview and the count, the edit page
pages the members and edits a large group by difference."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rules import services
from rules.models import AddressGroup, AddressGroupMember
from rules.selectors import member_refs
from tests.support.addresses import host as literal

pytestmark = pytest.mark.django_db


@pytest.fixture
def big() -> AddressGroup:
    g = services.object_save(AddressGroup(name="big"))
    services.address_group_set_members(group=g, members=[literal(i) for i in range(600)])
    return g


def test_list_shows_a_preview_and_the_count(operator_client, big):
    page = operator_client.get(reverse("dashboard:objects", args=["address-groups"]))
    html = page.content.decode()
    assert literal(0) in html and literal(19) in html
    assert literal(20) not in html
    assert "600 in all" in html


def test_edit_page_pages_members_and_edits_by_difference(operator_client, big):
    edit = reverse("dashboard:object-edit", args=["address-groups", big.pk])
    html = operator_client.get(edit, {"page": 2}).content.decode()
    assert "Members (600)" in html
    assert literal(100) in html and literal(99) not in html and literal(200) not in html
    assert 'name="members"' not in html and 'name="add_members"' in html
    operator_client.post(
        edit,
        {
            "name": "big",
            "description": "",
            "add_members": "198.18.5.5",
            "remove_members": f"{literal(0)}, {literal(1)}",
        },
    )
    members = member_refs(AddressGroupMember, [big.pk])[big.pk]
    assert len(members) == 599
    assert members[-1] == "198.18.5.5" and literal(0) not in members and literal(1) not in members


def test_small_group_keeps_the_members_field(operator_client):
    g = services.object_save(AddressGroup(name="small"))
    services.address_group_set_members(group=g, members=["198.18.0.1", "198.18.0.2"])
    html = operator_client.get(
        reverse("dashboard:object-edit", args=["address-groups", g.pk])
    ).content.decode()
    assert 'name="members"' in html and "198.18.0.1\n198.18.0.2" in html
