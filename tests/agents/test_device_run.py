"""One device's deployment against real agents (the agent's own HTTPS server and engine,
recording dataplane, in threads of this process): compile → push → confirm, retries,
refusals, failed assertions and compile errors, the device lease, redelivery."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import services
from agents.choices import DeploymentStatus
from agents.client import AgentClient, AgentUnreachable, console_public_key_b64
from agents.models import DeviceDeployment
from rampart_agent.sample import make_bundle
from rules.models import Device, Rule, RuleSet
from tests.agents.helpers import free_port, run_all
from tests.support.deploy import local_agent, make_device, make_policy

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]


def test_deploy_compiles_pushes_confirms_and_records_every_step(agent, policy):
    _, group = policy
    device = make_device("web-1", group=group, agent=agent)
    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=10)
    assert run_all(deployment) == ["confirmed"]
    dd = deployment.device_deployments.get()
    assert [t["state"] for t in dd.transitions] == [
        "queued",
        "compiling",
        "pushing",
        "applied",
        "confirmed",
    ]
    assert (
        dd.version == 1
        and len(dd.bundle_hash) == 64
        and dd.confirmed_at >= dd.applied_at >= dd.pushed_at
    )
    assert (
        dd.agent_response["result"] == "applied"
        and dd.agent_response["confirm"]["result"] == "confirmed"
    )
    # the kernel (recording) holds our chain with the rule set's rules, and the agent confirmed
    v4 = "\n".join(line for chain in agent.dp.tables["v4"]["filter"].values() for line in chain)
    assert "--dport 80" in v4 and "--dport 443" in v4 and "198.18.0.0/15" in v4
    status = agent.engine.status()
    assert status["applied"] == {
        **status["applied"],
        "hash": dd.bundle_hash,
        "version": 1,
        "confirmed": True,
    }
    device.refresh_from_db()
    assert (device.applied_hash, device.applied_version) == (dd.bundle_hash, 1)
    deployment.refresh_from_db()
    assert (
        deployment.status == DeploymentStatus.SUCCEEDED and deployment.waves[0]["state"] == "done"
    )

    # the same policy again: the agent already holds that hash
    again = services.deploy_create(devices=[device.pk])
    assert run_all(again) == ["unchanged"]
    assert again.device_deployments.get().version == 2


def test_agent_down_retries_then_fails_with_reason(policy):
    _, group = policy
    device = make_device(
        "web-1",
        group=group,
        port=free_port(),
        agent_public_key=console_public_key_b64(),
        agent_cert_fingerprint="ab" * 32,
    )
    deployment = services.deploy_create(devices=[device.pk])
    dd = deployment.device_deployments.get()
    for _ in range(2):
        with pytest.raises(services.RetryLater):
            services.device_deployment_run(device_deployment_id=dd.pk)
    dd.refresh_from_db()
    assert dd.state == "pushing" and dd.attempts == 2 and "unreachable" in dd.error
    assert (
        services.device_deployment_run(device_deployment_id=dd.pk) == "failed"
    )  # 3rd = last attempt
    dd.refresh_from_db()
    assert "agent unreachable after 3 attempts" in dd.error
    assert sum("retrying" in t.get("note", "") for t in dd.transitions) == 2
    assert Device.objects.get(pk=device.pk).push_lease_owner is None


def test_kernel_refusal_is_final_not_retried(tmp_path, deploy_console, policy):
    _, group = policy
    with local_agent(
        tmp_path / "a",
        deploy_console,
        fail_on=lambda fam, payload: "chain loop" if fam == "v4" else None,
    ) as agent:
        device = make_device("web-1", group=group, agent=agent)
        deployment = services.deploy_create(devices=[device.pk])
        assert run_all(deployment) == ["failed"]
    dd = deployment.device_deployments.get()
    assert (
        dd.attempts == 1
        and "kernel refused" in dd.error
        and dd.agent_response["result"] == "failed"
    )


def test_failed_assertion_is_not_pushed_and_named(agent):
    _, group = make_policy(
        "web",
        ports=(80,),
        assertions=[
            {
                "name": "ssh-closed",
                "chain": "input",
                "protocol": "tcp",
                "source": "198.18.5.5",
                "destination": "198.18.0.1",
                "dport": 80,
                "expect": "drop",
            }
        ],
    )
    device = make_device("web-1", group=group, agent=agent)
    deployment = services.deploy_create(devices=[device.pk])
    assert run_all(deployment) == ["failed"]
    dd = deployment.device_deployments.get()
    assert (
        "web.assertions[0] (ssh-closed)" in dd.error
        and "expect drop, FAILS: got accept" in dd.error
    )
    assert agent.dp.payloads == [] or all("198.18.0.0/15" not in p for _, p in agent.dp.payloads)
    assert agent.engine.status()["applied"] is None


def test_confirm_that_never_arrives_ends_rolled_back(agent, policy, monkeypatch):
    _, group = policy
    device = make_device("web-1", group=group, agent=agent)
    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=1)

    def lost(self, version, connect_timeout=None):
        raise AgentUnreachable("confirm lost on the way")

    monkeypatch.setattr(AgentClient, "confirm", lost)
    assert run_all(deployment) == ["rolled_back"]
    dd = deployment.device_deployments.get()
    assert "confirm did not reach the agent within 1s" in dd.error
    status = agent.engine.status()
    assert status["last_rollback"]["version"] == dd.version and status["applied"] is None


def test_one_push_per_device_lease_and_dead_owner_takeover(agent, policy):
    _, group = policy
    device = make_device("web-1", group=group, agent=agent)
    first = services.deploy_create(devices=[device.pk]).device_deployments.get()
    services.deploy_create(devices=[device.pk])  # supersedes `first` while queued...
    DeviceDeployment.objects.filter(pk=first.pk).update(
        state="pushing"
    )  # ...pretend it was in flight
    second = DeviceDeployment.objects.exclude(pk=first.pk).get()
    assert services.lease_acquire(first)
    with pytest.raises(services.DeviceBusy):
        services.device_deployment_run(device_deployment_id=second.pk)
    # the holder dies (kill -9): its pid is gone on this host, so the lease is taken over at once
    dead = subprocess.Popen(["true"])
    dead.wait()
    Device.objects.filter(pk=device.pk).update(
        push_lease_owner=f"{socket.gethostname()}:{dead.pid}:{first.pk}"
    )
    assert services.device_deployment_run(device_deployment_id=second.pk) == "confirmed"
    # a live holder elsewhere is respected until its lease expires
    Device.objects.filter(pk=device.pk).update(
        push_lease_owner=f"other-host:{os.getpid()}:1",
        push_lease_until=timezone.now() + timedelta(minutes=5),
    )
    assert not services.lease_acquire(second)
    Device.objects.filter(pk=device.pk).update(
        push_lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert services.lease_acquire(second)


def test_redelivered_task_recognises_its_own_push(agent, policy, monkeypatch):
    """Worker died after the agent applied but before the console recorded it."""
    _, group = policy
    device = make_device("web-1", group=group, agent=agent)
    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=30)
    dd = deployment.device_deployments.get()
    real_confirm = AgentClient.confirm

    def crash(self, version, connect_timeout=None):
        raise SystemExit("worker killed")

    monkeypatch.setattr(AgentClient, "confirm", crash)
    with pytest.raises(SystemExit):
        services.device_deployment_run(device_deployment_id=dd.pk)
    dd.refresh_from_db()
    assert dd.state == "applied" and agent.engine.status()["pending"]["version"] == dd.version
    monkeypatch.setattr(AgentClient, "confirm", real_confirm)
    assert services.device_deployment_run(device_deployment_id=dd.pk) == "confirmed"
    dd.refresh_from_db()
    assert dd.agent_response.get("recovered") is True and dd.attempts == 2
    assert agent.engine.status()["applied"]["confirmed"] is True


def test_agent_with_higher_version_is_overtaken(agent, policy):
    _, group = policy
    device = make_device("web-1", group=group, agent=agent)

    spec = {"filter": {"chains": {"RPT-INPUT": ["-j ACCEPT"]}, "jumps": {"INPUT": ["RPT-INPUT"]}}}
    agent.engine.apply({"bundle": make_bundle(v4=spec), "version": 41, "confirm_timeout": 0})
    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=0)
    assert run_all(deployment) == ["confirmed"]
    assert deployment.device_deployments.get().version == 42


def test_compile_error_fails_without_retry(agent):
    ruleset = RuleSet.objects.create(name="bad")
    Rule.objects.create(
        ruleset=ruleset, chain="input", action="accept", protocol="udp", dports=["70000"]
    )
    device = make_device("web-1", agent=agent)
    device.rulesets.add(ruleset)
    deployment = services.deploy_create(devices=[device.pk])
    assert run_all(deployment) == ["failed"]
    dd = deployment.device_deployments.get()
    assert "does not compile" in dd.error and dd.attempts == 1


def test_version_collision_with_another_bundles_rollback_pushes_higher(agent, policy):
    """An out-of-band apply rolled back at the version the console was about to use: the
    rollback is not ours (another hash), so the console goes past it and its bundle lands."""
    _, group = policy
    device = make_device("web-1", group=group, agent=agent)
    spec = {"filter": {"chains": {"RPT-INPUT": ["-j ACCEPT"]}, "jumps": {"INPUT": ["RPT-INPUT"]}}}
    other = agent.engine.apply(
        {"bundle": make_bundle(v4=spec), "version": 1, "confirm_timeout": 30}
    )
    agent.engine.rollback("break-glass bundle refused by the operator")
    assert agent.engine.status()["last_rollback"]["version"] == 1

    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=10)
    assert run_all(deployment) == ["confirmed"]
    dd = deployment.device_deployments.get()
    assert dd.version == 2 and dd.bundle_hash != other["hash"]
    assert "break-glass" not in dd.error and dd.agent_response["result"] == "applied"
    applied = agent.engine.status()["applied"]
    assert applied["hash"] == dd.bundle_hash and applied["version"] == 2 and applied["confirmed"]
    assert Device.objects.get(pk=device.pk).applied_version == 2
