"""Zones in the rule editor, in a real browser: the zone selects offer the zones, a rule
saved with one shows it in the table, and a zone on the wrong side is refused on the
field while typing."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from rules import services
from rules.models import Zone
from tests.dashboard.helpers import small_policy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_rule_with_zones_from_the_editor(page, login, make_user):
    ruleset = small_policy()
    services.zone_save(Zone(name="lan", interfaces=["eth1", "veth+"]))
    services.zone_save(Zone(name="wan", interfaces=["eth0"]))
    login(make_user("olga", "operator"))
    page.goto(f"/rulesets/{ruleset.pk}/")

    page.get_by_role("button", name="Add rule").click()
    form = page.locator("#rule-form")
    expect(form).to_be_visible()
    expect(form.locator("[name=in_zone] option")).to_have_text(["—", "lan", "wan"])
    # inline validation: an out zone in chain input is refused on the field
    form.locator("[name=out_zone]").select_option("wan")
    form.locator("[name=comment]").click()
    expect(page.locator("#err-out_zone")).to_contain_text("cannot be matched in chain input")

    form.locator("[name=chain]").select_option("forward")
    form.locator("[name=in_zone]").select_option("lan")
    form.locator("[name=comment]").fill("lan to wan")
    form.get_by_role("button", name="Add rule").click()
    expect(page.locator("#editor-panel")).to_be_empty()
    row = page.locator("tr[data-rule-id]", has_text="lan to wan")
    expect(row).to_contain_text("in zone lan out zone wan")
    rule = ruleset.rules.get(comment="lan to wan")
    assert (rule.chain, rule.in_zone, rule.out_zone) == ("forward", "lan", "wan")
    assert page.js_errors == []


def test_zone_pages_create_with_field_errors_and_where_used(page, login, make_user):
    ruleset = small_policy()
    login(make_user("olga", "operator"))
    page.goto("/objects/zones/")
    page.get_by_role("link", name="New zone").click()
    page.get_by_label("Name").fill("lan")
    page.get_by_label("Interfaces").fill("eth1, veth+")
    page.get_by_label("Networks").fill("198.18.1.0/3x")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#err-networks")).to_contain_text("prefix length")
    assert not Zone.objects.exists()
    page.get_by_label("Networks").fill("198.18.1.0/24")
    page.get_by_role("button", name="Save").click()
    row = page.get_by_test_id("objects-table").locator("tr", has_text="lan")
    expect(row).to_contain_text("eth1, veth+")
    expect(row).to_contain_text("198.18.1.0/24")
    services.rule_create(
        ruleset=ruleset, data={"chain": "forward", "action": "accept", "in_zone": "lan"}
    )
    page.reload()
    row = page.get_by_test_id("objects-table").locator("tr", has_text="lan")
    row.get_by_role("button", name="show").click()
    expect(row.get_by_test_id("where-used")).to_contain_text("rule web#4")
    assert page.js_errors == []
