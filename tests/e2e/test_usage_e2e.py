"""Where-used through groups and hit counts in the rule set editor, in a real browser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from agents.models import RuleCounter
from rules import services
from rules.models import AddressGroup, AddressObject, NatRule
from tests.dashboard.helpers import device_with, small_policy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_where_used_follows_groups_to_rules_and_devices(page, login, make_user):
    ruleset = small_policy()
    services.object_save(AddressObject(name="db-1", value="198.18.1.20"))
    inner = services.object_save(AddressGroup(name="db"))
    services.address_group_set_members(group=inner, members=["db-1"])
    outer = services.object_save(AddressGroup(name="backends"))
    services.address_group_set_members(group=outer, members=["db"])
    services.rule_create(ruleset=ruleset, data={"action": "accept", "destinations": ["backends"]})
    device_with(ruleset)
    db1 = AddressObject.objects.get(name="db-1")
    login(make_user("vera", "viewer"))

    page.goto("/objects/addresses/?q=db-1")
    page.locator(f"#obj-{db1.pk}").get_by_role("button", name="show").click()
    used = page.locator(f"#used-{db1.pk} [data-testid=where-used]")
    rule = used.locator("li[data-kind=rule]")
    expect(rule).to_contain_text("rule web#4")
    expect(rule).to_contain_text("via address group db → address group backends")
    expect(used.locator("li[data-kind=device]")).to_contain_text("device edge-1")
    expect(used.locator("li[data-kind='rule set']")).to_contain_text("rule set web")
    expect(used.locator("li[data-direct]")).to_have_text("address group db")
    assert page.js_errors == []


def test_the_editor_shows_hits_and_filters_idle_rules(page, login, make_user):
    ruleset = small_policy()
    first, second, third = ruleset.rules.order_by("position")
    now = timezone.now()
    for name in ("edge-1", "edge-2"):
        device = device_with(ruleset, name)
        RuleCounter.objects.create(
            device=device, rule_uuid=first.uuid, packets=5, bytes=500, last_hit_at=now
        )
        RuleCounter.objects.create(
            device=device,
            rule_uuid=second.uuid,
            packets=3,
            bytes=180,
            last_hit_at=now - timedelta(days=45),
        )
    services.nat_rule_create(
        nat=NatRule(
            ruleset=ruleset,
            type="dnat",
            destinations=["web-1"],
            protocol="tcp",
            dports=["80"],
            to="198.18.1.10:8080",
        )
    )
    login(make_user("olga", "operator"))

    page.goto(f"/rulesets/{ruleset.pk}/")
    hits = page.locator("[data-testid=rules-table] [data-testid=hits]")
    expect(hits).to_have_count(3)
    expect(hits.nth(0)).to_contain_text("10")
    expect(hits.nth(1)).to_contain_text("6")
    expect(hits.nth(1)).to_contain_text("1\xa0month ago")
    expect(hits.nth(2)).to_contain_text("—")  # no device counts the third rule
    expect(page.locator("[data-testid=nat-rules]")).to_contain_text("198.18.1.10:8080")

    page.get_by_label("Hits").select_option("idle")
    expect(page.locator("[data-testid=rule-count]")).to_have_text("2 of 3 rules match")
    expect(page.locator("[data-testid=rules-table]")).not_to_contain_text("office to web")
    assert "hits=idle" in page.url
    page.get_by_label("Hits").select_option("never")
    expect(page.locator("[data-testid=rule-count]")).to_have_text("1 of 3 rules match")
    expect(page.locator("[data-testid=rules-table]")).to_contain_text("block lab")
    assert page.js_errors == []
