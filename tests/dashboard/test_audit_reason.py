"""Reason and ticket on every dashboard write, required by the same settings as the API, and
the audit chain's state on the overview."""

from __future__ import annotations

import io

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from agents.services import deploy_create, deployment_refresh
from agents.services.transitions import S, move
from core.accounts import roles
from core.audit.models import AuditEntry
from dashboard.urls import dashboard_patterns
from rules.models import AddressObject, PendingDeviceChange, Rule

from .helpers import HX, device_with, small_policy

pytestmark = pytest.mark.django_db

# Views that check input without writing anything: no reason is asked of them.
NOT_WRITING = {"rule-validate", "rule-validate-new", "rule-analyse", "rule-analyse-new"}
PAYLOAD = {
    "name": "new-thing",
    "value": "198.18.7.7",
    "action": "accept",
    "chain": "input",
    "protocol": "tcp",
    "dports": "443",
    "rules": [],
    "rule": 0,
    "before": 0,
    "decision": "approve",
    "comment": "fine",
    "message": "back",
    "management_sources": "198.18.0.1",
}


@pytest.fixture
def world(make_user):
    """One of everything a write view can act on."""
    ruleset = small_policy()
    devices = [device_with(ruleset, f"edge-{i}") for i in range(2)]
    deployment = deploy_create(devices=[d.pk for d in devices], rollout={"wave_size": 1})
    first = deployment.device_deployments.get(wave=0)
    move(first, S.FAILED, "agent unreachable", error="connection refused")
    deployment_refresh(deployment_id=deployment.pk)
    rule = ruleset.rules.first()
    PAYLOAD.update(rules=[rule.pk], rule=rule.pk, before=ruleset.rules.last().pk)
    return {
        "ruleset": ruleset,
        "rule": rule,
        "device": devices[0],
        "deployment": deployment,
        "revision": ruleset.revisions.order_by("number").first(),
        "address": AddressObject.objects.get(name="office"),
        "change": PendingDeviceChange.objects.create(
            device=devices[0],
            before={"input_policy": "drop"},
            after={"input_policy": "accept"},
            author_name="operator",
        ),
        "user": make_user("someone", "operator"),
    }


def _write_views():
    for pattern in dashboard_patterns:
        allowed = getattr(pattern.callback, "rampart_roles", None)
        if allowed is not None and roles.VIEWER not in allowed and pattern.name not in NOT_WRITING:
            yield pattern


def _url(pattern, world) -> str:
    pks = {
        "device-change": world["change"].pk,
        "device": world["device"].pk,
        "deployment": world["deployment"].pk,
        "revision": world["revision"].pk,
        "object": world["address"].pk,
        "user": world["user"].pk,
    }
    family = next((f for f in pks if pattern.name.startswith(f"{f}-")), None)
    values = {
        "pk": pks[family] if family else world["ruleset"].pk,
        "rule_pk": world["rule"].pk,
        "kind": "addresses",
    }
    return reverse(
        f"dashboard:{pattern.name}", kwargs={k: values[k] for k in pattern.pattern.converters}
    )


def _said(response) -> str:
    """Everything the page was told: body, HTMX toast, flash messages."""
    parts = [response.content.decode(errors="replace"), response.get("HX-Trigger", "")]
    parts += [str(m) for m in get_messages(response.wsgi_request)]
    return "\n".join(parts)


@pytest.mark.parametrize("htmx", [False, True], ids=["form post", "htmx"])
def test_every_write_view_refuses_a_missing_reason_and_writes_nothing(
    client, users, settings, world, htmx
):
    settings.RAMPART = {**settings.RAMPART, "AUDIT_REQUIRE_REASON": True}
    client.force_login(users["admin"])
    names, wrong = [], []
    for pattern in _write_views():
        before = AuditEntry.objects.count()
        response = client.post(_url(pattern, world), PAYLOAD, **(HX if htmx else {}))
        if response.status_code == 404 or "a reason is required" not in _said(response):
            wrong.append((pattern.name, response.status_code))
        if AuditEntry.objects.count() != before:
            wrong.append((pattern.name, "wrote entries"))
        names.append(pattern.name)
    assert wrong == []
    assert {"object-new", "object-delete", "rule-delete", "rules-bulk", "deploy"} <= set(names)


def test_a_required_ticket_is_refused_too_and_both_land_in_the_entries(client, users, settings):
    settings.RAMPART = {
        **settings.RAMPART,
        "AUDIT_REQUIRE_REASON": True,
        "AUDIT_REQUIRE_TICKET": True,
    }
    client.force_login(users["operator"])
    url = reverse("dashboard:object-new", args=["addresses"])
    page = client.post(url, {"name": "web-9", "value": "198.18.1.9", "reason": "new web"})
    assert page.status_code == 200 and "a ticket reference is required" in page.content.decode()
    assert not AddressObject.objects.filter(name="web-9").exists()
    client.post(
        url, {"name": "web-9", "value": "198.18.1.9", "reason": "new web", "ticket": "CHG-9"}
    )
    entry = AuditEntry.objects.get(
        object_type="rules.addressobject", action="create", object_name="web-9"
    )
    assert (entry.reason, entry.ticket, entry.channel) == ("new web", "CHG-9", "ui")


def test_htmx_writes_carry_the_page_reason_into_every_entry(client, users):
    ruleset = small_policy()
    rule = ruleset.rules.first()
    client.force_login(users["operator"])
    url = reverse("dashboard:rule-delete", args=[ruleset.pk, rule.pk])
    response = client.post(url, {"reason": "lab closed", "ticket": "OPS-4"}, **HX)
    assert response.status_code == 204 and not Rule.objects.filter(pk=rule.pk).exists()
    deleted = AuditEntry.objects.get(
        object_type="rules.rule", object_id=str(rule.pk), action="delete"
    )
    assert (deleted.reason, deleted.ticket) == ("lab closed", "OPS-4")
    # Headers work as on the API (what a script driving the dashboard would send).
    other = ruleset.rules.first()
    client.post(
        reverse("dashboard:rule-delete", args=[ruleset.pk, other.pk]),
        HTTP_X_RAMPART_REASON="by header",
        **HX,
    )
    entry = AuditEntry.objects.get(
        object_type="rules.rule", object_id=str(other.pk), action="delete"
    )
    assert entry.reason == "by header"


def test_the_rule_editor_shows_the_reason_error_on_the_field_and_validation_asks_none(
    client, users, settings
):
    settings.RAMPART = {**settings.RAMPART, "AUDIT_REQUIRE_REASON": True}
    ruleset = small_policy()
    client.force_login(users["operator"])
    data = {"chain": "input", "action": "accept", "protocol": "tcp", "dports": "80"}
    page = client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]), data, **HX
    ).content.decode()
    error_slot = page[page.index('id="err-reason"') :]
    assert "a reason is required" in error_slot[: error_slot.index("</div></div>") + 12]
    checked = client.post(reverse("dashboard:rule-validate-new", args=[ruleset.pk]), data, **HX)
    assert "a reason is required" not in checked.content.decode()
    assert ruleset.rules.count() == 3


def test_the_reason_bar_is_shown_to_writers_only(client, users, settings):
    settings.RAMPART = {**settings.RAMPART, "AUDIT_REQUIRE_TICKET": True}
    client.force_login(users["viewer"])
    assert (
        'data-testid="audit-bar"' not in client.get(reverse("dashboard:overview")).content.decode()
    )
    client.force_login(users["approver"])
    page = client.get(reverse("dashboard:overview")).content.decode()
    bar = page[page.index('data-testid="audit-bar"') :]
    assert 'data-audit-field="reason"' in bar and 'data-audit-field="ticket"' in bar
    assert bar.index("(required)") > bar.index("Ticket")  # the ticket is required, not the reason


def test_the_overview_shows_the_last_verification_and_the_checkpoint_age(client, users):
    client.force_login(users["viewer"])
    page = client.get(reverse("dashboard:overview")).content.decode()
    assert "never verified" in page and "no checkpoint yet" in page
    small_policy()
    call_command("audit_verify", stdout=io.StringIO())
    page = client.get(reverse("dashboard:overview")).content.decode()
    head = AuditEntry.objects.order_by("-seq").first()
    assert ">intact<" in page and f"last checkpoint #{head.seq}" in page
    if connection.vendor == "postgresql":
        return  # the trigger refuses the tampering below
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET actor = 'mallory' WHERE seq IN (1, 2)")
    with pytest.raises(CommandError, match="2 breaks"):
        call_command("audit_verify", stdout=io.StringIO(), stderr=io.StringIO())
    page = client.get(reverse("dashboard:overview")).content.decode()
    assert "broken: 2 breaks" in page
