"""Starting deployments from the dashboard, and refusals shown where they were asked."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.models import Deployment
from agents.services import deploy_create, deployment_refresh
from agents.services.transitions import S, move
from core.audit.models import AuditEntry
from rules import services
from rules.models import (
    Device,
    DeviceGroup,
    DeviceGroupRuleSet,
    DeviceMembership,
    RuleSet,
)

from .helpers import HX, device_with, small_policy

pytestmark = pytest.mark.django_db


def test_device_deploy_button_starts_a_deployment(client, users):
    ruleset = small_policy()
    group = DeviceGroup.objects.create(name="web")
    DeviceGroupRuleSet.objects.create(group=group, ruleset=ruleset)
    device = Device.objects.create(name="edge-1", address="198.18.0.2")
    DeviceMembership.objects.create(device=device, group=group)
    client.force_login(users["viewer"])
    detail = client.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    assert "deploy-button" not in detail
    assert client.post(reverse("dashboard:deploy"), {"device": device.pk}).status_code == 403
    client.force_login(users["operator"])
    assert (
        "deploy-button"
        in client.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    )
    response = client.post(reverse("dashboard:deploy"), {"device": device.pk, "inline": "1"}, **HX)
    deployment = Deployment.objects.get()
    page = response.content.decode()
    assert (
        f"Deployment #{deployment.pk}" in page
        and 'hx-trigger="every 1s"' in page
        and "edge-1" in page
    )
    assert deployment.device_deployments.get().device == device
    listing = client.get(reverse("dashboard:deployments")).content.decode()
    assert f"#{deployment.pk}" in listing
    DeviceMembership.objects.create(
        device=Device.objects.create(name="edge-2", address="198.18.0.3"), group=group
    )
    by_ruleset = client.post(
        reverse("dashboard:deploy"), {"ruleset": ruleset.pk, "canary": "1", "halt_on_failure": "on"}
    )
    fleet = Deployment.objects.latest("id")
    assert by_ruleset.status_code == 302 and by_ruleset["Location"] == reverse(
        "dashboard:deployment", args=[fleet.pk]
    )
    page = client.get(by_ruleset["Location"]).content.decode()
    assert "Wave 1</strong>" not in page and "Wave 1 (canary)" in page and "Wave 2" in page
    assert page.index("edge-1") < page.index("Wave 2") < page.index("edge-2")


def test_deploy_refusal_is_shown_where_it_was_asked(operator_client):
    ruleset = services.object_save(RuleSet(name="guarded", requires_approval=True))
    services.rule_create(ruleset=ruleset, data={"action": "accept", "comment": "unreviewed"})
    device = device_with(ruleset)
    preview = reverse("dashboard:ruleset-preview", args=[ruleset.pk])
    response = operator_client.post(
        reverse("dashboard:deploy"), {"device": device.pk, "next": preview}, follow=True
    )
    assert response.redirect_chain[-1][0] == preview
    assert "Deploy refused" in response.content.decode() and "approv" in response.content.decode()
    assert not Deployment.objects.exists()
    evil = operator_client.post(
        reverse("dashboard:deploy"), {"device": device.pk, "next": "https://evil.example/"}
    )
    assert evil["Location"] == reverse("dashboard:deployments")


def _halted_deployment() -> Deployment:
    """Two devices in two waves; the first fails, so the rollout halts before the second."""
    ruleset = small_policy()
    devices = [device_with(ruleset, f"edge-{i}") for i in range(2)]
    deployment = deploy_create(
        devices=[d.pk for d in devices], rollout={"wave_size": 1}, reason="ticket 7"
    )
    first = deployment.device_deployments.select_related("device").get(wave=0)
    move(first, S.FAILED, "agent unreachable", error="connection refused")
    deployment_refresh(deployment_id=deployment.pk)
    deployment.refresh_from_db()
    assert deployment.status == "halted"
    return deployment


def _controls(page: str) -> set[str]:
    return {name for name in ("resume-button", "cancel-button") if name in page}


def test_resume_and_cancel_buttons_follow_the_role_and_the_state(client, users):
    deployment = _halted_deployment()
    url = reverse("dashboard:deployment", args=[deployment.pk])
    resume = reverse("dashboard:deployment-resume", args=[deployment.pk])
    cancel = reverse("dashboard:deployment-cancel", args=[deployment.pk])
    client.force_login(users["viewer"])
    page = client.get(url).content.decode()
    assert _controls(page) == set()
    assert "ticket 7" in page and "stopped: wave 1 of 2: 1 device(s) failed" in page
    assert client.post(resume).status_code == 403 and client.post(cancel).status_code == 403

    client.force_login(users["operator"])
    page = client.get(url).content.decode()
    assert _controls(page) == {"resume-button", "cancel-button"}
    form = page[page.index('data-testid="resume-form"') :]
    assert "csrfmiddlewaretoken" in form[: form.index("</form>")]
    response = client.post(resume, {"reason": "edge-0 retired"}, follow=True)
    assert response.redirect_chain[-1][0] == url
    page = response.content.decode()
    assert f"Deployment #{deployment.pk} resumed." in page
    assert _controls(page) == {"cancel-button"} and "stopped:" not in page
    assert "resumed at wave 1 by operator" in page and "edge-0 retired" in page
    deployment.refresh_from_db()
    assert deployment.status == "running" and deployment.current_wave == 1
    assert deployment.device_deployments.get(wave=1).state == "queued"

    page = client.post(cancel, {"reason": "freeze"}, follow=True).content.decode()
    assert f"Deployment #{deployment.pk} cancelled." in page and _controls(page) == set()
    assert "stopped: cancelled by operator: freeze" in page and "ticket 7" in page
    assert deployment.device_deployments.get(wave=1).state == "skipped"
    refused = client.post(resume, follow=True).content.decode()
    assert f"Deployment #{deployment.pk} not resumed" in refused
    assert "is cancelled: only a halted rollout can be resumed" in refused
    assert AuditEntry.objects.filter(action__in=["deploy_resume", "deploy_cancel"]).count() == 2
