"""The rule editor: what the user types reaches rules.services, the services' errors come
back next to the right field, and moves, bulk actions, filters and findings work."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from rules.models import (
    Rule,
)

from .helpers import HX, positions, small_policy

pytestmark = pytest.mark.django_db


def test_rule_create_shows_service_errors_on_the_field(operator_client):
    ruleset = small_policy()
    url = reverse("dashboard:rule-new", args=[ruleset.pk])
    response = operator_client.post(
        url,
        {
            "chain": "input",
            "action": "accept",
            "sources": "nosuch",
            "protocol": "tcp",
            "dports": "99999",
        },
        **HX,
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "unknown address or address group" in page and "nosuch" in page
    assert 'id="err-dports"' in page and "99999" in page
    assert ruleset.rules.count() == 3


def test_rule_create_edit_and_delete(operator_client):
    ruleset = small_policy()
    response = operator_client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {
            "chain": "input",
            "action": "reject",
            "sources": "office, 198.18.5.5",
            "services": "https",
            "comment": "new one",
            "position": "1",
            "enabled": "on",
            "states": ["new"],
        },
        **HX,
    )
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"])["rules-changed"] is True
    rule = ruleset.rules.get(comment="new one")
    assert rule.position == 1 and rule.action == "reject" and rule.states == ["new"]
    assert sorted(a.ref for a in rule.addresses.all()) == ["198.18.5.5", "office"]
    edit = reverse("dashboard:rule-edit", args=[ruleset.pk, rule.pk])
    assert "198.18.5.5" in operator_client.get(edit, **HX).content.decode()
    operator_client.post(
        edit, {"chain": "input", "action": "drop", "sources": "office", "comment": "edited"}, **HX
    )
    rule.refresh_from_db()
    assert (rule.action, rule.comment, rule.enabled) == ("drop", "edited", False)
    operator_client.post(reverse("dashboard:rule-delete", args=[ruleset.pk, rule.pk]), **HX)
    assert positions(ruleset) == ["office to web", "ssh", "block lab"]


def test_inline_validation_saves_nothing(operator_client):
    ruleset = small_policy()
    url = reverse("dashboard:rule-validate-new", args=[ruleset.pk])
    bad = operator_client.post(
        url,
        {
            "chain": "output",
            "action": "accept",
            "in_interface": "eth0",
            "sources": "198.18.0.1",
            "destinations": "2001:2::1",
        },
        **HX,
    ).content.decode()
    assert (
        'id="err-in_interface"' in bad and "in_interface cannot be matched in chain output" in bad
    )
    assert "no packet can match" in bad
    good = operator_client.post(
        url, {"chain": "input", "action": "accept", "sources": "office"}, **HX
    ).content.decode()
    assert "<div>" not in good.split('id="err-sources"')[1].split("</div>")[0]
    assert ruleset.rules.count() == 3


def test_drag_place_before_and_after(operator_client):
    ruleset = small_policy()
    rules = {r.comment: r for r in ruleset.rules.all()}
    url = reverse("dashboard:rule-place", args=[ruleset.pk])
    response = operator_client.post(
        url, {"rule": rules["block lab"].pk, "before": rules["office to web"].pk}, **HX
    )
    assert response.status_code == 204
    assert positions(ruleset) == ["block lab", "office to web", "ssh"]
    operator_client.post(url, {"rule": rules["block lab"].pk, "after": rules["ssh"].pk}, **HX)
    assert positions(ruleset) == ["office to web", "ssh", "block lab"]
    refused = operator_client.post(url, {"rule": rules["ssh"].pk, "before": rules["ssh"].pk}, **HX)
    assert refused.status_code == 409 and "toast" in refused["HX-Trigger"]


def test_bulk_enable_disable_move_delete(operator_client):
    ruleset = small_policy()
    ids = {r.comment: r.pk for r in ruleset.rules.all()}
    url = reverse("dashboard:rules-bulk", args=[ruleset.pk])
    operator_client.post(url, {"action": "disable", "rules": [ids["ssh"], ids["block lab"]]}, **HX)
    assert list(ruleset.rules.filter(enabled=False).values_list("comment", flat=True)) == [
        "ssh",
        "block lab",
    ]
    operator_client.post(url, {"action": "enable", "rules": [ids["ssh"]]}, **HX)
    assert Rule.objects.get(pk=ids["ssh"]).enabled
    operator_client.post(
        url, {"action": "move", "position": "1", "rules": [ids["ssh"], ids["block lab"]]}, **HX
    )
    assert positions(ruleset) == ["ssh", "block lab", "office to web"]
    no_pos = operator_client.post(url, {"action": "move", "rules": [ids["ssh"]]}, **HX)
    assert no_pos.status_code == 400 and "target position" in no_pos["HX-Trigger"]
    operator_client.post(
        url, {"action": "delete", "rules": [ids["ssh"], ids["office to web"]]}, **HX
    )
    assert positions(ruleset) == ["block lab"]
    assert ruleset.rules.get().position == 1


def test_filter_and_search(operator_client):
    ruleset = small_policy()
    url = reverse("dashboard:ruleset", args=[ruleset.pk])
    for query, expected in (
        ({"q": "office"}, {"office to web"}),
        ({"q": "https"}, {"office to web"}),
        ({"q": "web"}, {"office to web", "ssh"}),
        ({"action": "drop"}, {"block lab"}),
        ({"q": "#2"}, {"ssh"}),
        ({"q": "198.18.1.10"}, {"ssh"}),
    ):
        response = operator_client.get(url, query, HTTP_HX_TARGET="rules-table", **HX)
        page = response.content.decode()
        assert "<nav" not in page.split('id="rules-table"')[0]  # only the table partial
        shown = {c for c in ("office to web", "ssh", "block lab") if f">{c}<" in page}
        assert shown == expected, query


def row_html(page: str, rule) -> str:
    """The <tr> of one rule in a rendered rule table."""
    return "<tr" + page.split(f'<tr id="rule-{rule.pk}"')[1].split("</tr>")[0]


def test_shadowed_rule_is_highlighted(operator_client):
    ruleset = small_policy()
    url = reverse("dashboard:rule-new", args=[ruleset.pk])
    operator_client.post(
        url,
        {
            "chain": "input",
            "action": "accept",
            "sources": "198.18.9.5",
            "comment": "never decides",
            "enabled": "on",
        },
        **HX,
    )
    page = operator_client.get(reverse("dashboard:ruleset", args=[ruleset.pk])).content.decode()
    shadowed = row_html(page, ruleset.rules.get(comment="never decides"))
    assert "finding-shadowed" in shadowed.split(">")[0]
    assert "is shadowed" in shadowed and "rule #3" in shadowed
    assert "covers rule #4" in row_html(page, ruleset.rules.get(comment="block lab"))
    assert "finding-" not in row_html(page, ruleset.rules.get(comment="office to web"))
    assert "1 finding" in page


def test_a_log_prefix_keeps_its_spaces_as_through_the_api(operator_client):
    """`dropped: ` ends with its space (the REST API keeps it, trim_whitespace=False): the
    form stores what was typed, and saving the edit form unchanged keeps it."""
    ruleset = small_policy()
    fields = {"chain": "input", "action": "drop", "protocol": "tcp", "dports": "23"}
    prefixed = {**fields, "log": "on", "log_prefix": " dropped: ", "comment": "logged"}
    operator_client.post(reverse("dashboard:rule-new", args=[ruleset.pk]), prefixed, **HX)
    rule = ruleset.rules.get(comment="logged")
    assert rule.log_prefix == " dropped: "
    edit = reverse("dashboard:rule-edit", args=[ruleset.pk, rule.pk])
    operator_client.post(edit, {**prefixed, "comment": "edited"}, **HX)
    rule.refresh_from_db()
    assert (rule.comment, rule.log_prefix) == ("edited", " dropped: ")
