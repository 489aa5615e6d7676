"""Roles on the dashboard: every page needs a login, every write view refuses a viewer.

Write views are found from the URL map (the `rampart_roles` tag that
dashboard.permissions puts on every guarded view), so a new write view is
covered without editing this file; EXPECTED_WRITES guards against losing the tag.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.accounts import roles
from dashboard.urls import dashboard_patterns
from rules.models import AddressObject, Device, Rule, RuleSet

from .helpers import device_with, small_policy

pytestmark = pytest.mark.django_db

EXPECTED_WRITES = {
    "ruleset-new",
    "ruleset-edit",
    "rule-new",
    "rule-edit",
    "rule-validate",
    "rule-validate-new",
    "rule-place",
    "rules-bulk",
    "rule-delete",
    "object-new",
    "object-edit",
    "object-delete",
    "deploy",
    "revision-rollback",
    "revision-review",
    "device-change-review",
    "device-settings",
}


def _kwargs(pattern, ruleset: RuleSet) -> dict:
    pk = (
        ruleset.revisions.order_by("number").first().pk
        if pattern.name.startswith("revision")
        else ruleset.pk
    )
    values = {"pk": pk, "rule_pk": ruleset.rules.first().pk, "kind": "addresses", "name": "nosuch"}
    return {key: values[key] for key in pattern.pattern.converters}


def _views():
    for pattern in dashboard_patterns:
        yield pattern, getattr(pattern.callback, "rampart_roles", None)


def _write_views():
    return [p for p, allowed in _views() if allowed is not None and roles.VIEWER not in allowed]


def _object_kwargs(kwargs: dict, name: str = "") -> dict:
    if kwargs.get("kind") == "addresses" and "pk" in kwargs:
        kwargs["pk"] = AddressObject.objects.get(name="office").pk
    if name == "device-settings":
        device = Device.objects.first() or device_with(RuleSet.objects.first())
        kwargs["pk"] = device.pk
    return kwargs


def test_every_dashboard_view_is_guarded():
    unguarded = [p.name for p, allowed in _views() if allowed is None]
    assert unguarded == []
    assert {p.name for p in _write_views()} >= EXPECTED_WRITES


def test_anonymous_is_sent_to_login(client):
    ruleset = small_policy()
    for pattern, _ in _views():
        url = reverse(f"dashboard:{pattern.name}", kwargs=_kwargs(pattern, ruleset))
        response = client.get(url)
        assert response.status_code == 302, pattern.name
        assert response["Location"].startswith(reverse("login")), pattern.name


def test_viewer_gets_403_on_every_write_view(client, users):
    ruleset = small_policy()
    client.force_login(users["viewer"])
    before = (Rule.objects.count(), list(ruleset.rules.values_list("id", "position", "enabled")))
    for pattern in _write_views():
        url = reverse(f"dashboard:{pattern.name}", kwargs=_object_kwargs(_kwargs(pattern, ruleset)))
        for method in (client.get, client.post):
            response = method(
                url,
                {
                    "action": "delete",
                    "rules": [ruleset.rules.first().pk],
                    "name": "x",
                    "value": "198.18.0.1",
                    "rule": 1,
                    "before": 2,
                },
                HTTP_HX_REQUEST="true",
            )
            assert response.status_code == 403, (pattern.name, method.__name__)
    assert (
        Rule.objects.count(),
        list(ruleset.rules.values_list("id", "position", "enabled")),
    ) == before


def test_each_role_reaches_exactly_its_write_views(client, users):
    """Operators edit and deploy but do not review; approvers review but do not edit."""
    ruleset = small_policy()
    for role in ("operator", "approver", "admin"):
        client.force_login(users[role])
        for pattern in _write_views():
            kwargs = _object_kwargs(_kwargs(pattern, ruleset), pattern.name)
            url = reverse(f"dashboard:{pattern.name}", kwargs=kwargs)
            allowed = role in pattern.callback.rampart_roles
            assert client.get(url).status_code in ((200, 405) if allowed else (403,)), (
                role,
                pattern.name,
            )
    assert "revision-review" in {
        p.name for p in _write_views() if "operator" not in p.callback.rampart_roles
    }
    assert "rule-new" in {
        p.name for p in _write_views() if "approver" not in p.callback.rampart_roles
    }


def test_viewer_sees_no_edit_controls(client, users):
    ruleset = small_policy()
    url = reverse("dashboard:ruleset", args=[ruleset.pk])
    client.force_login(users["viewer"])
    page = client.get(url).content.decode()
    assert "office to web" in page
    for marker in ("data-sortable", "Add rule", "bulk-form", "drag-handle", ">edit<"):
        assert marker not in page, marker
    client.force_login(users["operator"])
    page = client.get(url).content.decode()
    for marker in ("data-sortable", "Add rule", "bulk-form", "drag-handle"):
        assert marker in page, marker
    rule = ruleset.rules.first()
    assert f'hx-get="{reverse("dashboard:rule-edit", args=[ruleset.pk, rule.pk])}"' in page
    assert f'hx-post="{reverse("dashboard:rule-delete", args=[ruleset.pk, rule.pk])}"' in page
