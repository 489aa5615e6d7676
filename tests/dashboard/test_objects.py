"""Object pages: group members saved with the group, where-used, errors on the field."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rules.models import (
    AddressGroup,
    AddressObject,
)

from .helpers import HX, small_policy

pytestmark = pytest.mark.django_db


def test_address_group_form_and_where_used(operator_client):
    small_policy()
    new = reverse("dashboard:object-new", args=["address-groups"])
    bad = operator_client.post(new, {"name": "dmz", "members": "web-1 nosuch"})
    assert "unknown address or address group" in bad.content.decode()
    assert not AddressGroup.objects.filter(name="dmz").exists()
    operator_client.post(new, {"name": "dmz", "members": "web-1, 198.18.3.0/24"})
    group = AddressGroup.objects.get(name="dmz")
    assert [m.ref for m in group.members.all()] == ["web-1", "198.18.3.0/24"]
    web1 = AddressObject.objects.get(name="web-1")
    used = operator_client.get(
        reverse("dashboard:object-used", args=["addresses", web1.pk]), **HX
    ).content.decode()
    assert "address group dmz" in used and "rule web#2" in used
    refused = operator_client.post(
        reverse("dashboard:object-delete", args=["addresses", web1.pk]), follow=True
    )
    assert "still in use" in refused.content.decode()
    assert AddressObject.objects.filter(name="web-1").exists()


def test_address_form_errors(operator_client):
    response = operator_client.post(
        reverse("dashboard:object-new", args=["addresses"]),
        {"name": "bad", "value": "198.18.0.300"},
    )
    page = response.content.decode()
    assert response.status_code == 200 and 'id="err-value"' in page
    assert "198.18.0.300" in page.split('id="err-value"')[1].split("</div></div>")[0]
    assert not AddressObject.objects.filter(name="bad").exists()
