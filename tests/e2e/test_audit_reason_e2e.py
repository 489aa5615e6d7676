"""The page's "Reason for changes" bar in a real browser: its values go with plain form posts
and HTMX writes alike, and land in the audit entries."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.audit.models import AuditEntry
from rules import services
from rules.models import Rule, RuleSet

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_reason_bar_goes_with_every_kind_of_write(page, login, make_user, settings):
    settings.RAMPART = {**settings.RAMPART, "AUDIT_REQUIRE_REASON": True}
    login(make_user("olga", "operator"))
    bar_reason, bar_ticket = page.locator("#audit-reason"), page.locator("#audit-ticket")

    # A plain form post without a reason: refused on the field, nothing written.
    page.goto("/rulesets/new/")
    page.get_by_label("Name").fill("ui-audit")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#err-reason")).to_contain_text("a reason is required")
    assert not RuleSet.objects.filter(name="ui-audit").exists()

    # The bar fills it in.
    bar_reason.fill("new edge policy")
    bar_ticket.fill("CHG-42")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="ui-audit")).to_be_visible()
    created = AuditEntry.objects.get(object_type="rules.ruleset", action="create")
    assert (created.reason, created.ticket) == ("new edge policy", "CHG-42")

    # An HTMX button that posts nothing of its own (delete a rule).
    ruleset = RuleSet.objects.get(name="ui-audit")
    rule = services.rule_create(ruleset=ruleset, data={"action": "drop", "comment": "tmp"})
    page.reload()
    page.locator("#audit-reason").fill("lab closed")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete rule 1").click()
    expect(page.locator("[data-testid=rules-table]")).not_to_contain_text("tmp")
    assert not Rule.objects.filter(pk=rule.pk).exists()
    deleted = AuditEntry.objects.get(
        object_type="rules.rule", object_id=str(rule.pk), action="delete"
    )
    assert deleted.reason == "lab closed"
    assert page.js_errors == []
