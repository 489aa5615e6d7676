"""Live analysis in the rule editor, in a real browser: typing a rule that an earlier rule
shadows shows the finding before anything is saved, fixing it makes the finding go, and a
rule shadowed by another rule set on a device using this one shows that too."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from rules.models import Rule, RuleSet
from tests.support.draft_policy import edge_and_base

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _policy() -> RuleSet:
    return edge_and_base()


def test_shadow_finding_appears_while_typing(page, login, make_user):
    edge = _policy()
    login(make_user("olga", "operator"))
    page.goto(f"/rulesets/{edge.pk}/")
    page.get_by_role("button", name="Add rule").click()
    form = page.locator("#rule-form")
    expect(form).to_be_visible()
    live = page.get_by_test_id("draft-analysis")

    form.locator("[name=action]").select_option("drop")
    form.locator("[name=protocol]").select_option("tcp")
    form.locator("[name=dports]").fill("22")
    # half-typed address: a field message, no finding and no crash
    form.locator("[name=sources]").click()
    page.keyboard.type("198.18.0.", delay=20)
    expect(page.locator("#err-sources")).not_to_be_empty()
    expect(live.locator("[data-kind=shadowed]")).to_have_count(0)
    page.keyboard.type("7", delay=20)
    shadow = live.locator("[data-kind=shadowed][data-source=ruleset]")
    expect(shadow).to_contain_text("edge rule 1")
    expect(page.locator("#err-sources")).to_be_empty()

    # fix it: place it first; the finding goes
    form.locator("[name=position]").fill("1")
    expect(shadow).to_have_count(0)
    expect(live.locator("[data-kind=none]")).to_contain_text("As rule #1")
    assert Rule.objects.filter(ruleset=edge).count() == 1  # nothing saved
    assert page.js_errors == []


def test_finding_from_another_ruleset_on_a_device(page, login, make_user):
    edge = _policy()
    login(make_user("olga", "operator"))
    page.goto(f"/rulesets/{edge.pk}/")
    page.get_by_role("button", name="Add rule").click()
    form = page.locator("#rule-form")
    form.locator("[name=protocol]").select_option("tcp")
    form.locator("[name=dports]").fill("443")
    form.locator("[name=sources]").click()
    page.keyboard.type("198.18.5.9", delay=20)
    finding = page.get_by_test_id("draft-analysis").locator("[data-source=device]")
    expect(finding).to_contain_text("on fw-1")
    expect(finding).to_contain_text("base rule 1")
    # another port: base's rule no longer covers it
    form.locator("[name=dports]").fill("444")
    expect(finding).to_have_count(0)
    assert page.js_errors == []
