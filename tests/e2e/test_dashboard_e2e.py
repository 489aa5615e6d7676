"""The dashboard in a real browser: what a network admin does on a first day."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from rules.models import AddressGroup, RuleSet

from .conftest import shot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def add_rule(page, **fields: str) -> None:
    """Open the editor panel, fill it in, save, wait for the table to show the rule."""
    page.get_by_role("button", name="Add rule").click()
    form = page.locator("#rule-form")
    expect(form).to_be_visible()
    for name, value in fields.items():
        field = form.locator(f"[name={name}]")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    form.get_by_role("button", name="Add rule").click()
    expect(page.locator("#editor-panel")).to_be_empty()
    expect(page.locator("[data-testid=rules-table]")).to_contain_text(fields["comment"])


def comments(page) -> list[str]:
    return [
        c.strip().split("\n")[0]
        for c in page.locator("tr[data-rule-id] td.comment").all_inner_texts()
    ]


def test_edit_reorder_and_see_shadowing(page, login, make_user):
    operator = make_user("olga", "operator")
    login(operator)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    shot(page, "overview")

    # An address group, made through the objects page.
    page.get_by_role("link", name="Objects").click()
    page.get_by_role("link", name="Address groups").click()
    page.get_by_role("link", name="New address group").click()
    page.get_by_label("Name").fill("ui-web")
    page.get_by_label("Members").fill("198.18.60.10\n198.18.60.11")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("[data-testid=objects-table]")).to_contain_text("198.18.60.11")
    assert [m.ref for m in AddressGroup.objects.get(name="ui-web").members.all()] == [
        "198.18.60.10",
        "198.18.60.11",
    ]

    # A rule set and three rules through the editor panel.
    page.get_by_role("link", name="Rule sets").click()
    page.get_by_role("link", name="New rule set").click()
    page.get_by_label("Name").fill("ui-edge")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="ui-edge")).to_be_visible()
    add_rule(
        page,
        action="drop",
        sources="198.18.50.7",
        protocol="tcp",
        dports="80",
        comment="block host",
    )
    add_rule(
        page,
        action="accept",
        sources="198.18.50.0/24",
        protocol="tcp",
        dports="80",
        comment="web from lab",
    )
    add_rule(
        page,
        action="accept",
        destinations="ui-web",
        protocol="tcp",
        dports="443",
        comment="tls to web",
    )

    # Inline validation: an unknown name is reported while typing, before saving.
    page.get_by_role("button", name="Add rule").click()
    page.locator("#rule-form [name=sources]").fill("no-such-thing")
    page.locator("#rule-form [name=comment]").click()
    expect(page.locator("#err-sources")).to_contain_text("unknown address or address group")
    shot(page, "rule-editor")
    page.keyboard.press("Escape")
    expect(page.locator("#editor-panel")).to_be_empty()

    assert comments(page) == ["block host", "web from lab", "tls to web"]
    expect(page.locator("[data-testid=analysis]")).to_contain_text("no shadowed")

    # Drag "web from lab" above "block host": now the drop rule can never decide.
    rows = page.locator("tr[data-rule-id]")
    source = rows.nth(1).locator(".drag-handle")
    target = rows.nth(0).locator(".drag-handle")
    src, dst = source.bounding_box(), target.bounding_box()
    page.mouse.move(src["x"] + src["width"] / 2, src["y"] + src["height"] / 2)
    page.mouse.down()
    page.mouse.move(dst["x"] + dst["width"] / 2, dst["y"] + 2, steps=12)
    page.mouse.move(dst["x"] + dst["width"] / 2, dst["y"] + 1, steps=4)
    page.mouse.up()
    expect(page.locator("#toasts")).to_contain_text("Rule moved to #1")
    ruleset = RuleSet.objects.get(name="ui-edge")
    assert list(ruleset.rules.order_by("position").values_list("comment", flat=True)) == [
        "web from lab",
        "block host",
        "tls to web",
    ]
    shadowed = page.locator("tr.finding-shadowed")
    expect(shadowed).to_have_count(1)
    expect(shadowed).to_contain_text("block host")
    expect(shadowed).to_contain_text("is shadowed")
    assert comments(page) == ["web from lab", "block host", "tls to web"]
    page.reload()  # a clean page (no toasts) for the screenshots
    expect(page.locator("tr.finding-shadowed")).to_have_count(1)
    shot(page, "ruleset")

    # Keyboard reordering: focus a row, Alt+Up moves it (same endpoint as the drag).
    page.locator("tr[data-rule-id]").nth(2).focus()
    page.keyboard.press("Alt+ArrowUp")
    expect(page.locator("#toasts")).to_contain_text("Rule moved to #2")
    expect(page.locator("tr[data-rule-id]").nth(1)).to_contain_text("tls to web")
    assert list(ruleset.rules.order_by("position").values_list("comment", flat=True)) == [
        "web from lab",
        "tls to web",
        "block host",
    ]

    # Keyboard: "/" focuses the search; searching narrows the table.
    page.keyboard.press("/")
    search = page.locator("[name=q]")
    expect(search).to_be_focused()
    # the whole word at once: typed key by key, a slow machine sends "u" alone and the
    # page it swaps in drops the rest of the typing
    search.fill("ui-web")
    expect(page.locator("tr[data-rule-id]")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"q=ui-web"))

    # Bulk: select all, disable.
    page.locator("[name=q]").fill("")
    expect(page.locator("tr[data-rule-id]")).to_have_count(3)
    page.locator("[data-select-all]").check()
    page.get_by_role("button", name="Disable").click()
    expect(page.locator("tr.rule-disabled")).to_have_count(3)
    assert not ruleset.rules.filter(enabled=True).exists()

    page.goto(f"/rulesets/{ruleset.pk}/preview/")
    expect(page.locator("body")).to_contain_text("No device uses this rule set")
    page.goto("/revisions/")
    expect(page.get_by_test_id("revisions-table")).to_contain_text("ui-edge")
    page.get_by_test_id("revisions-table").get_by_role("link", name="r3", exact=True).click()
    expect(page.get_by_test_id("revision-diff")).to_contain_text("web from lab")
    shot(page, "revision")
    for name, url in (
        ("devices", "/devices/"),
        ("objects", "/objects/address-groups/"),
        ("deployments", "/deployments/"),
        ("rulesets", "/rulesets/"),
        ("tracer", "/tracer/"),
        ("approvals", "/approvals/"),
        ("audit-log", "/audit/"),
    ):
        page.goto(url)
        shot(page, name)
    assert page.js_errors == []


def test_viewer_sees_no_edit_controls(page, login, make_user):
    from rules import services

    ruleset = services.object_save(RuleSet(name="ui-ro"))
    services.rule_create(ruleset=ruleset, data={"action": "accept", "comment": "read me"})
    login(make_user("vera", "viewer"))
    page.goto(f"/rulesets/{ruleset.pk}/")
    expect(page.locator("[data-testid=rules-table]")).to_contain_text("read me")
    expect(page.get_by_role("button", name="Add rule")).to_have_count(0)
    expect(page.locator(".drag-handle")).to_have_count(0)
    expect(page.locator("#bulk-form")).to_have_count(0)


@pytest.mark.skipif(
    not os.environ.get("RAMPART_UPDATE_SCREENSHOT"),
    reason="set RAMPART_UPDATE_SCREENSHOT=1 to refresh docs/screenshot-ruleset.png",
)
def test_readme_screenshot(page, login, make_user):
    """docs/screenshot-ruleset.png: a realistic rule set, with a shadowed rule highlighted."""
    from datetime import timedelta

    from django.utils import timezone

    from rules import services
    from rules.models import AddressObject, Service, ServiceGroup

    for name, value in (
        ("office", "198.18.0.0/24"),
        ("monitoring", "198.18.2.5"),
        ("bastion", "198.18.3.4"),
    ):
        services.object_save(AddressObject(name=name, value=value))
    web = services.object_save(AddressGroup(name="web-servers"))
    services.address_group_set_members(
        group=web, members=["198.18.1.10", "198.18.1.11", "2001:2::10"]
    )
    for name, proto, ports in (
        ("http", "tcp", ["80"]),
        ("https", "tcp", ["443", "8443-8445"]),
        ("ssh", "tcp", ["22"]),
    ):
        services.object_save(Service(name=name, protocol=proto, ports=ports))
    group = services.object_save(ServiceGroup(name="web"))
    services.service_group_set_members(group=group, members=["http", "https"])
    ruleset = services.object_save(
        RuleSet(name="web-baseline", description="what every web server allows")
    )
    soon = timezone.now() + timedelta(days=3)
    for data in (
        {
            "action": "accept",
            "destinations": ["web-servers"],
            "services": ["web"],
            "states": ["new"],
            "comment": "the web tier is public",
        },
        {
            "action": "accept",
            "sources": ["bastion"],
            "services": ["ssh"],
            "log": True,
            "comment": "ssh via bastion",
        },
        {
            "action": "accept",
            "sources": ["monitoring"],
            "protocol": "tcp",
            "dports": ["9100"],
            "comment": "node exporter",
        },
        {
            "action": "drop",
            "sources": ["office"],
            "protocol": "tcp",
            "dports": ["23"],
            "log": True,
            "comment": "no telnet",
        },
        {
            "action": "reject",
            "sources": ["198.18.0.0/24"],
            "destinations": ["web-servers"],
            "services": ["https"],
            "states": ["new"],
            "comment": "office must use the proxy",
        },
        {
            "action": "accept",
            "sources": ["198.18.0.0/16"],
            "protocol": "icmp",
            "rate_limit": "10/second",
            "comment": "ping, rate limited",
        },
        {
            "action": "accept",
            "sources": ["198.18.9.0/24"],
            "protocol": "tcp",
            "dports": ["8080"],
            "expires_at": soon,
            "comment": "load test, temporary",
        },
        {"action": "drop", "sources": ["198.18.9.0/24"], "enabled": False, "comment": "lab (off)"},
    ):
        services.rule_create(ruleset=ruleset, data=data)
    login(make_user("ada", "operator"))
    page.set_viewport_size({"width": 1440, "height": 640})
    page.goto(f"/rulesets/{ruleset.pk}/")
    expect(page.locator("tr.finding-shadowed")).to_have_count(1)
    docs = Path(__file__).resolve().parents[2] / "docs" / "screenshot-ruleset.png"
    page.screenshot(path=str(docs), full_page=True)
