"""Four-eyes covers what a device enforces, end to end: an operator's change of a device's
input default on a device whose rule set requires approval cannot reach the agent's kernel
until another approver approves it; a deployment records the revisions and the device
settings it pushed."""

from __future__ import annotations

import pytest
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

from agents import services
from agents.models import Deployment
from core.audit.models import AuditEntry
from rules import revisions
from rules import services as rule_services
from rules.models import (
    DeviceChangeStatus,
    DeviceGroup,
    DeviceMembership,
    DeviceRuleSet,
    PendingDeviceChange,
    RuleSet,
)
from tests.rules.revisions.support import as_user
from tests.support.deploy import make_device

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture
def guarded_device(agent, users):
    """fw-1 (input default drop) with rule set `edge` under four-eyes, approved."""
    ruleset = rule_services.object_save(RuleSet(name="edge", requires_approval=True))
    with as_user(users["operator"]):
        rule_services.rule_create(
            ruleset=ruleset,
            data={"chain": "input", "action": "accept", "protocol": "tcp", "dports": ["22"]},
        )
    revisions.revision_approve(
        revision=ruleset.revisions.order_by("-number").first(), reviewer=users["approver"]
    )
    device = make_device("fw-1", agent=agent, management_sources=["198.18.0.0/15"])
    DeviceRuleSet.objects.create(device=device, ruleset=ruleset)
    return device


def deploy(device, user) -> Deployment:
    deployment = services.deploy_create(user=user, devices=[device.pk], confirm_timeout=5)
    dd = deployment.device_deployments.get()
    assert services.device_deployment_run(device_deployment_id=dd.pk) == "confirmed"
    return deployment


def kernel_input_default(agent) -> str:
    """The verdict of the agent kernel's input default rule (the recording dataplane)."""
    [rule] = [r for r in agent.dp.tables["v4"]["filter"]["RPT-INPUT"] if '"rpt:sys:default"' in r]
    return rule.rsplit("-j ", 1)[1]


def test_a_device_change_reaches_the_kernel_only_after_another_approver(
    guarded_device, agent, users, api_client_for
):
    device = guarded_device
    operator = api_client_for(users["operator"])
    url = reverse("device-detail", args=[device.pk])
    asked = operator.patch(url, {"default_policy": {"input": "accept"}}, format="json")
    assert asked.status_code == 202, asked.data
    change = PendingDeviceChange.objects.get(pk=asked.data["id"])
    assert asked.data["before"] == {"default_input": "drop"}
    assert asked.data["after"] == {"default_input": "accept"}
    assert (change.status, change.author) == (DeviceChangeStatus.PENDING, users["operator"])
    shown = operator.get(url).data
    assert shown["default_policy"]["input"] == "drop"  # the approved setting
    assert shown["pending_change"]["id"] == change.pk

    # deployed without approval: the bundle and the kernel keep the old default
    first = deploy(device, users["operator"])
    assert first.document["devices"][0]["default_policy"]["input"] == "drop"
    assert kernel_input_default(agent) == "DROP"
    bundle = reverse("device-bundle", args=[device.pk])
    pushed = operator.get(bundle, {"target": "deployed"}).data
    assert '-A RPT-INPUT -m comment --comment "rpt:sys:default" -j DROP' in pushed["iptables_v4"]
    dd = first.device_deployments.get()
    assert dd.settings["default_policy"]["input"] == "drop"

    # the author cannot approve their own change; a viewer cannot approve at all
    approve = reverse("devicechange-approve", args=[change.pk])
    assert operator.post(approve, {}, format="json").status_code == 403
    assert api_client_for(users["viewer"]).post(approve, {}, format="json").status_code == 403
    change.refresh_from_db()
    assert change.status == DeviceChangeStatus.PENDING

    ok = api_client_for(users["approver"]).post(approve, {"comment": "ok"}, format="json")
    assert ok.status_code == 200 and ok.data["status"] == "approved"
    device.refresh_from_db()
    assert device.default_input == "accept"
    assert operator.get(url).data["pending_change"] is None

    second = deploy(device, users["operator"])
    assert second.device_deployments.get().settings["default_policy"]["input"] == "accept"
    assert kernel_input_default(agent) == "ACCEPT"
    pushed = operator.get(bundle, {"target": "deployed"}).data
    assert '-A RPT-INPUT -m comment --comment "rpt:sys:default" -j ACCEPT' in pushed["iptables_v4"]

    actions = set(
        AuditEntry.objects.filter(object_type="rules.pendingdevicechange").values_list(
            "action", flat=True
        )
    )
    assert {"create", "device_change_approve"} <= actions
    applied = AuditEntry.objects.filter(
        object_type="rules.device", action="update", actor="approver"
    ).last()
    assert applied is not None and "default_input" in applied.changed


def test_a_deployment_records_the_revisions_and_settings_it_pushed(
    guarded_device, users, api_client_for
):
    device = guarded_device
    ruleset = RuleSet.objects.get(name="edge")
    approved = revisions.deployable_revision(ruleset)
    with as_user(users["operator"]):  # an unapproved edit is not what deploys
        rule_services.rule_create(
            ruleset=ruleset,
            data={"chain": "input", "action": "accept", "protocol": "tcp", "dports": ["8080"]},
        )
    deployment = deploy(device, users["operator"])
    recorded = {"id": approved.pk, "number": approved.number, "hash": approved.hash}
    assert deployment.revisions == {"edge": {**recorded, "status": "approved"}}
    api = api_client_for(users["viewer"])
    body = api.get(reverse("deployment-detail", args=[deployment.pk])).data
    assert body["revisions"]["edge"]["id"] == approved.pk
    [dd] = body["devices"]
    assert dd["settings"]["rulesets"] == ["edge"]
    assert dd["settings"]["default_policy"] == {
        "input": "drop",
        "forward": "drop",
        "output": "accept",
    }
    assert dd["settings"]["forward_fallthrough"] is False


def test_rejecting_keeps_the_approved_settings(guarded_device, users, api_client_for):
    device = guarded_device
    url = reverse("device-detail", args=[device.pk])
    operator = api_client_for(users["operator"])
    asked = operator.patch(url, {"rulesets": [], "stateful": False}, format="json")
    assert asked.status_code == 202
    assert asked.data["after"] == {"rulesets": [], "stateful": False}
    reject = reverse("devicechange-reject", args=[asked.data["id"]])
    approver = api_client_for(users["approver"])
    assert approver.post(reject, {}, format="json").status_code == 400  # say why
    done = approver.post(reject, {"comment": "no"}, format="json")
    assert done.status_code == 200 and done.data["status"] == "rejected"
    device.refresh_from_db()
    assert device.stateful is True
    assert list(device.ruleset_links.values_list("ruleset__name", flat=True)) == ["edge"]
    assert AuditEntry.objects.filter(action="device_change_reject").exists()


def test_the_schema_documents_the_held_change():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    device = schema["paths"]["/api/v1/devices/{id}/"]
    for method in ("put", "patch"):
        held = device[method]["responses"]["202"]["content"]["application/json"]["schema"]
        assert held == {"$ref": "#/components/schemas/PendingDeviceChange"}
    assert "/api/v1/device-changes/{id}/approve/" in schema["paths"]
    props = schema["components"]["schemas"]
    assert "pending_change" in props["Device"]["properties"]
    assert props["Deployment"]["properties"]["revisions"]["additionalProperties"] == {
        "$ref": "#/components/schemas/RecordedRevision"
    }
    assert "settings" in props["DeviceDeployment"]["properties"]


def test_a_group_change_answers_202_and_is_reviewed_from_the_approvals_page(
    guarded_device, users, api_client_for, client
):
    group = DeviceGroup.objects.create(name="dmz")
    DeviceMembership.objects.create(device=guarded_device, group=group)
    operator = api_client_for(users["operator"])
    url = reverse("devicegroup-detail", args=[group.pk])
    asked = operator.patch(url, {"rulesets": ["edge"]}, format="json")
    assert asked.status_code == 202 and asked.data["group_name"] == "dmz"
    assert operator.get(url).data["pending_change"]["id"] == asked.data["id"]
    assert not group.ruleset_links.exists()
    client.force_login(users["approver"])
    queue = client.get(reverse("dashboard:approvals")).content.decode()
    assert "group dmz" in queue
    review = reverse("dashboard:device-change-review", args=[asked.data["id"]])
    done = client.post(review, {"decision": "approve"})
    assert done.status_code == 302 and done["Location"] == reverse("dashboard:approvals")
    assert [link.ruleset.name for link in group.ruleset_links.all()] == ["edge"]
