"""One compile path: the worker, the API and the dashboard compile a device alike.

The case that used to disagree: a device whose rule set requires approval, with
`forward_fallthrough` on and an unapproved edit pending. The worker deployed the approved
revision with the device's flag; the API compiled the working copy (the unapproved edit
included) and the dashboard dropped the flag.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from django.urls import reverse

from agents import services
from agents.client import console_public_key_b64
from agents.device_policy import NothingDeployed, Target, device_policy
from core.audit.context import AuditContext, reset_context, set_context
from dashboard.compiled import device_preview
from dashboard.forms.tracer import TraceForm
from rules import revisions
from rules import services as rule_services
from rules.models import Device, DeviceRuleSet, RuleSet
from tests.support.deploy import local_agent

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture(autouse=True)
def console_key(settings, tmp_path):
    settings.RAMPART = {**settings.RAMPART, "CONSOLE_KEY_FILE": str(tmp_path / "console-key.pem")}
    return console_public_key_b64()


def act_as(user):
    return set_context(
        AuditContext(channel="ui", request=SimpleNamespace(user=user), request_id="test")
    )


def add_rule(user, ruleset, port: int) -> None:
    token = act_as(user)
    try:
        rule_services.rule_create(
            ruleset=ruleset,
            data={"chain": "forward", "action": "accept", "protocol": "tcp", "dports": [str(port)]},
        )
    finally:
        reset_context(token)


@pytest.fixture
def guarded_device(users, tmp_path, console_key):
    """fw-1: forward default accept + forward_fallthrough, one rule set under four-eyes with
    an approved revision (port 80) and a pending, unapproved edit (port 8080)."""
    ruleset = rule_services.object_save(RuleSet(name="edge", requires_approval=True))
    add_rule(users["operator"], ruleset, 80)
    revisions.revision_approve(
        revision=ruleset.revisions.order_by("-number").first(), reviewer=users["approver"]
    )
    add_rule(users["operator"], ruleset, 8080)
    with local_agent(tmp_path / "agent", console_key) as agent:
        device = Device.objects.create(
            name="fw-1",
            address="127.0.0.1",
            agent_port=agent.port,
            default_forward="accept",
            forward_fallthrough=True,
            agent_public_key=agent.public_key,
            agent_cert_fingerprint=agent.fingerprint,
        )
        DeviceRuleSet.objects.create(device=device, ruleset=ruleset)
        yield device, agent


def deploy(device) -> str:
    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=10)
    dd = deployment.device_deployments.get()
    assert services.device_deployment_run(device_deployment_id=dd.pk) == "confirmed"
    dd.refresh_from_db()
    return dd.bundle_hash


def test_worker_api_and_every_target_agree_on_the_bundle(guarded_device, api_client_for, users):
    device, agent = guarded_device
    candidate_before = device_policy(device, Target.CANDIDATE).compile().hash

    worker_hash = deploy(device)

    assert agent.engine.status()["applied"]["hash"] == worker_hash
    assert candidate_before == worker_hash  # the preview before the deploy was the truth
    device.refresh_from_db()
    preview = device_preview(device)  # the dashboard's rule set preview
    assert preview.hash == worker_hash and preview.unchanged and not preview.errors
    api = api_client_for(users["viewer"])
    url = reverse("device-bundle", args=[device.pk])
    candidate = api.get(url).data
    assert candidate["target"] == "candidate" and candidate["hash"] == worker_hash
    deployed = api.get(url, {"target": "deployed"}).data
    assert deployed["target"] == "deployed" and deployed["hash"] == worker_hash
    assert deployed["hash_matches"] is True
    working = api.get(url, {"target": "working_copy"}).data
    assert working["target"] == "working_copy" and working["hash"] != worker_hash
    # what differs is exactly the unapproved edit, and the fall-through flag is honoured
    assert "--dport 8080" in working["iptables_v4"]
    assert "--dport 8080" not in candidate["iptables_v4"]
    assert "-P FORWARD" not in candidate["iptables_v4"]
    policy = device_policy(device, Target.CANDIDATE)
    without_flag = replace(policy, options=replace(policy.options, forward_fallthrough=False))
    assert without_flag.compile().hash != worker_hash  # the flag is part of what compiles


def test_tracer_traces_what_the_agent_holds_by_default(guarded_device, api_client_for, users):
    device, _ = guarded_device
    api = api_client_for(users["viewer"])
    url = reverse("device-trace", args=[device.pk])
    packet = {"chain": "forward", "protocol": "tcp", "source": "198.18.0.1"}
    packet["destination"], packet["dport"] = "198.18.0.2", "8080"
    nothing = api.get(url, packet)
    assert nothing.status_code == 409 and "target=candidate" in nothing.data["target"][0]
    deploy(device)
    deployed = api.get(url, packet).data
    working = api.get(url, {**packet, "target": "working_copy"}).data
    assert deployed["target"] == "deployed" and working["target"] == "working_copy"
    # 8080 is only in the unapproved edit: the deployed policy lets it fall through to
    # FORWARD (forward_fallthrough), the working copy accepts it by that rule
    assert working["decided_by"]["ruleset"] == "edge" and working["verdict"] == "accept"
    assert deployed["decided_by"]["ruleset"] is None
    assert api.get(url, {**packet, "target": "nonsense"}).status_code == 400
    # the dashboard's tracer: the same verdicts, target named
    device.refresh_from_db()
    for target, expected in (("deployed", deployed), ("working_copy", working)):
        form = TraceForm({"device": device.pk, "target": target, "state": "new", **packet})
        result = form.trace()
        assert result is not None and result.to_dict() == {
            k: expected[k] for k in ("verdict", "decided_by", "path", "notes", "chain", "nat")
        }


def test_a_device_with_nothing_deployed_says_so(guarded_device):
    device, _ = guarded_device
    with pytest.raises(NothingDeployed):
        device_policy(device, Target.DEPLOYED)


def test_diff_shows_what_a_deploy_would_change(guarded_device, api_client_for, users):
    device, _ = guarded_device
    api = api_client_for(users["viewer"])
    url = reverse("device-diff", args=[device.pk])
    first = api.get(url).data
    assert first["deployed"] is None and first["changed"] is True
    assert "+-A RPT-" in first["unified"] and first["chains"]["added"]
    deploy(device)
    same = api.get(url).data
    assert same["changed"] is False and same["unified"] == "" and same["deployed"]["hash_matches"]
    assert same["chains"] == {"added": [], "removed": [], "changed": {}}
    # approving the pending edit makes it the candidate: one chain changes, by one rule
    ruleset = RuleSet.objects.get(name="edge")
    revisions.revision_approve(
        revision=ruleset.revisions.order_by("-number").first(), reviewer=users["approver"]
    )
    changed = api.get(url).data
    assert changed["changed"] is True and not changed["chains"]["removed"]
    (name, text), *_ = changed["chains"]["changed"].items()
    assert "/filter/RPT-" in name and "+-A " in text and "--dport 8080" in text
    assert text.count("\n+-A ") == 1
