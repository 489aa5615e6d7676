"""The rule set editor shows what is used: hits and last hit per rule (summed over
devices), the "no hits in 30 days" and "never hit" filters, and the NAT rules; the object
pages follow groups in where-used."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.models import RuleCounter
from rules import services
from rules.models import AddressGroup, AddressObject, NatRule

from .helpers import HX, device_with, small_policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def counted():
    """Rule 1 hit an hour ago on two devices, rule 2 last hit 40 days ago, rule 3 never."""
    ruleset = small_policy()
    first, second, third = ruleset.rules.order_by("position")
    now = timezone.now()
    for name in ("edge-1", "edge-2"):
        device = device_with(ruleset, name)
        RuleCounter.objects.create(
            device=device,
            rule_uuid=first.uuid,
            packets=7,
            bytes=700,
            last_hit_at=now - timedelta(hours=1),
        )
        RuleCounter.objects.create(
            device=device,
            rule_uuid=second.uuid,
            packets=1,
            bytes=60,
            last_hit_at=now - timedelta(days=40),
        )
        RuleCounter.objects.create(device=device, rule_uuid=third.uuid)
    services.nat_rule_create(
        nat=NatRule(
            ruleset=ruleset,
            type="dnat",
            destinations=["web-1"],
            to="198.18.1.10:8080",
            protocol="tcp",
            dports=["80"],
            comment="web port 80",
        )
    )
    return ruleset


def _hits(page: str) -> list[str]:
    cells = page.split('data-testid="hits">')[1:]
    return [c.split("</td>")[0] for c in cells]


def test_hits_and_last_hit_are_summed_over_devices(operator_client, counted):
    page = operator_client.get(reverse("dashboard:ruleset", args=[counted.pk])).content.decode()
    first, second, third = _hits(page)
    assert 'data-packets="14"' in first and "1\xa0hour ago" in first
    assert 'data-packets="2"' in second and "1\xa0month ago" in second
    assert 'data-packets="0"' in third and "never" in third


def test_the_hit_filters(operator_client, counted):
    url = reverse("dashboard:ruleset", args=[counted.pk])
    idle = operator_client.get(url, {"hits": "idle"}, **HX, HTTP_HX_TARGET="rules-table")
    body = idle.content.decode()
    assert "2 of 3 rules match" in body and "office to web" not in body
    never = operator_client.get(url, {"hits": "never"}).content.decode()
    assert "1 of 3 rules match" in never and "block lab" in never and ">ssh<" not in never


def test_nat_rules_are_listed_beside_the_filter_rules(operator_client, counted):
    page = operator_client.get(reverse("dashboard:ruleset", args=[counted.pk])).content.decode()
    nat = page.split('data-testid="nat-rules"')[1].split("</table>")[0]
    assert "dnat" in nat and "198.18.1.10:8080" in nat and "web port 80" in nat and "web-1" in nat


def test_where_used_follows_groups(operator_client):
    ruleset = small_policy()
    services.object_save(AddressObject(name="db-1", value="198.18.1.20"))
    inner = services.object_save(AddressGroup(name="db"))
    services.address_group_set_members(group=inner, members=["db-1"])
    outer = services.object_save(AddressGroup(name="backends"))
    services.address_group_set_members(group=outer, members=["db"])
    services.rule_create(ruleset=ruleset, data={"action": "accept", "destinations": ["backends"]})
    device_with(ruleset)
    db1 = AddressObject.objects.get(name="db-1")
    used = operator_client.get(
        reverse("dashboard:object-used", args=["addresses", db1.pk]), **HX
    ).content.decode()
    assert "address group backends" in used and "via address group db" in used
    assert "rule web#4" in used and "via address group db → address group backends" in used
    assert "device edge-1" in used and "rule set web" in used
