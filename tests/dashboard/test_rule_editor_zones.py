"""Zones in the rule editor: the in/out zone fields offer the zones there are, a chosen
zone reaches the rule, the table shows it, and the services' zone errors come back on the
field."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rules import services
from rules.models import Zone

from .helpers import HX, small_policy

pytestmark = pytest.mark.django_db


def test_zone_fields_offer_the_zones_and_save_the_choice(operator_client):
    ruleset = small_policy()
    services.zone_save(Zone(name="lan", interfaces=["eth1", "veth+"]))
    services.zone_save(Zone(name="wan", interfaces=["eth0"]))
    form = operator_client.get(reverse("dashboard:rule-new", args=[ruleset.pk]), **HX)
    page = form.content.decode()
    for side in ("in_zone", "out_zone"):
        select = page.split(f'name="{side}"')[1].split("</select>")[0]
        assert '<option value="lan">lan</option>' in select
        assert '<option value="wan">wan</option>' in select
    operator_client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {
            "chain": "forward",
            "action": "accept",
            "in_zone": "lan",
            "out_zone": "wan",
            "comment": "z",
        },
        **HX,
    )
    rule = ruleset.rules.get(comment="z")
    assert (rule.in_zone, rule.out_zone) == ("lan", "wan")
    table = operator_client.get(reverse("dashboard:ruleset", args=[ruleset.pk])).content
    assert b"in zone lan out zone wan" in table


def test_zone_errors_come_back_on_the_field(operator_client):
    ruleset = small_policy()
    services.zone_save(Zone(name="wan", interfaces=["eth0"]))
    bad = operator_client.post(
        reverse("dashboard:rule-validate-new", args=[ruleset.pk]),
        {"chain": "input", "action": "accept", "out_zone": "wan"},
        **HX,
    ).content.decode()
    assert 'id="err-out_zone"' in bad and "out_zone cannot be matched in chain input" in bad
    unknown = operator_client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {"chain": "input", "action": "accept", "in_zone": "gone"},
        **HX,
    ).content.decode()
    assert 'id="err-in_zone"' in unknown
    assert ruleset.rules.count() == 3
