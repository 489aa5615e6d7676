"""Four-eyes on device settings in the dashboard, and what a deployment pushed."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.services import deploy_create
from core.audit.models import AuditEntry
from rules import revisions
from rules import services as rule_services
from rules.models import Device, DeviceChangeStatus, DeviceRuleSet, PendingDeviceChange, RuleSet
from tests.rules.revisions.support import as_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def guarded(users):
    """fw-1 with rule set `edge` under four-eyes (one approved revision)."""
    ruleset = rule_services.object_save(RuleSet(name="edge", requires_approval=True))
    with as_user(users["operator"]):
        rule_services.rule_create(
            ruleset=ruleset,
            data={"chain": "input", "action": "accept", "protocol": "tcp", "dports": ["22"]},
        )
    revisions.revision_approve(
        revision=ruleset.revisions.order_by("-number").first(), reviewer=users["approver"]
    )
    device = Device.objects.create(
        name="fw-1", address="198.18.0.2", management_sources=["198.18.0.0/15"]
    )
    DeviceRuleSet.objects.create(device=device, ruleset=ruleset)
    return device


def settings_post(client, device, **extra):
    data = {"management_sources": "198.18.0.0/15", "probes": "", **extra}
    return client.post(reverse("dashboard:device-settings", args=[device.pk]), data)


def test_a_settings_change_waits_for_another_approver(client, users, guarded):
    device = guarded
    client.force_login(users["operator"])
    saved = settings_post(client, device, default_input="accept", stateful="false")
    assert saved.status_code == 302
    device.refresh_from_db()
    assert device.default_input == "drop" and device.stateful is True
    change = PendingDeviceChange.objects.get()
    assert change.after == {"default_input": "accept", "stateful": False}
    detail = reverse("dashboard:device", args=[device.pk])
    page = client.get(detail).content.decode()
    assert 'data-testid="pending-change"' in page and "pending approval" in page
    assert 'value="approve"' not in page  # an operator cannot approve
    review = reverse("dashboard:device-change-review", args=[change.pk])
    assert client.post(review, {"decision": "approve"}).status_code == 403
    client.force_login(users["viewer"])
    assert 'value="approve"' not in client.get(detail).content.decode()
    assert client.post(review, {"decision": "approve"}).status_code == 403

    client.force_login(users["approver"])
    queue = client.get(reverse("dashboard:approvals")).content.decode()
    assert 'data-testid="device-changes-table"' in queue and detail in queue
    assert 'value="approve"' in client.get(detail).content.decode()
    done = client.post(review, {"decision": "approve", "comment": "ok"}, follow=True)
    assert "approved" in done.content.decode()
    device.refresh_from_db()
    assert (device.default_input, device.stateful) == ("accept", False)
    assert 'data-testid="pending-change"' not in client.get(detail).content.decode()
    assert AuditEntry.objects.filter(action="device_change_approve", actor="approver").exists()


def test_the_author_cannot_approve_even_as_admin(client, users, guarded):
    client.force_login(users["admin"])
    settings_post(client, guarded, default_output="drop")
    change = PendingDeviceChange.objects.get()
    review = reverse("dashboard:device-change-review", args=[change.pk])
    refused = client.post(review, {"decision": "approve"}, follow=True).content.decode()
    assert "you cannot review a change you made" in refused
    change.refresh_from_db()
    assert change.status == DeviceChangeStatus.PENDING


def test_deployment_page_shows_what_it_pushed_and_what_differs_now(client, users, guarded):
    device = guarded
    deployment = deploy_create(user=users["operator"], devices=[device.pk])
    approved = revisions.deployable_revision(RuleSet.objects.get(name="edge"))
    client.force_login(users["viewer"])
    url = reverse("dashboard:deployment", args=[deployment.pk])
    page = client.get(url).content.decode()
    assert 'data-testid="deployment-pushed"' in page
    assert reverse("dashboard:revision", args=[approved.pk]) in page
    assert f"r{approved.number}" in page and approved.hash[:12] in page
    assert "would push the same revisions and settings" in page
    with as_user(users["operator"]):
        rule_services.device_update(device=device, data={"default_input": "accept"}, refs={})
    rule_services.device_change_approve(
        change=PendingDeviceChange.objects.get(), reviewer=users["approver"]
    )
    page = client.get(url).content.decode()
    assert 'data-testid="pushed-differs"' in page
    assert "default_policy" in page and "accept" in page
