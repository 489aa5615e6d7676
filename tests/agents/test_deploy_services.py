"""Deploy services against real agents (the agent's own HTTPS server and engine, recording
dataplane, in threads of this process): compile → push → confirm, retries, refusals,
supersede, waves, the device lease, redelivery, drift, counters and the sweeper."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import services
from agents.choices import DeploymentStatus, DeploymentTrigger
from agents.client import AgentClient, AgentUnreachable, console_public_key_b64
from agents.models import Deployment, DeviceDeployment, RuleCounter
from rules.models import Device
from tests.support.deploy import local_agent, make_device, make_policy

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture(autouse=True)
def console_key(settings, tmp_path):
    settings.RAMPART = {
        **settings.RAMPART,
        "CONSOLE_KEY_FILE": str(tmp_path / "console-key.pem"),
        "DEPLOY_MAX_ATTEMPTS": 3,
    }
    return console_public_key_b64()


@pytest.fixture
def agent(tmp_path, console_key):
    with local_agent(tmp_path / "agent", console_key) as a:
        yield a


@pytest.fixture
def policy():
    return make_policy("web", ports=(80, 443))


def run_all(deployment: Deployment) -> list[str]:
    """Run every queued device deployment of the current wave (what the worker would do)."""
    out = []
    for dd in deployment.device_deployments.filter(state="queued").order_by("id"):
        out.append(services.device_deployment_run(device_deployment_id=dd.pk))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_kernel_refusal_is_final_not_retried(tmp_path, console_key, policy):
    _, group = policy
    with local_agent(
        tmp_path / "a",
        console_key,
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

    def lost(self, version):
        raise AgentUnreachable("confirm lost on the way")

    monkeypatch.setattr(AgentClient, "confirm", lost)
    assert run_all(deployment) == ["rolled_back"]
    dd = deployment.device_deployments.get()
    assert "confirm did not reach the agent within 1s" in dd.error
    status = agent.engine.status()
    assert status["last_rollback"]["version"] == dd.version and status["applied"] is None


def test_newer_deploy_supersedes_queued_older(agent, policy):
    _, group = policy
    device = make_device("web-1", group=group, agent=agent)
    old = services.deploy_create(devices=[device.pk])
    new = services.deploy_create(devices=[device.pk])
    old_dd = old.device_deployments.get()
    assert old_dd.state == "superseded" and old_dd.superseded_by == new.device_deployments.get()
    services.deployment_refresh(deployment_id=old.pk)
    assert Deployment.objects.get(pk=old.pk).status == DeploymentStatus.SUPERSEDED
    assert services.device_deployment_run(device_deployment_id=old_dd.pk) == "superseded"
    assert run_all(new) == ["confirmed"]


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

    def crash(self, version):
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
    from rampart_agent.sample import make_bundle

    spec = {"filter": {"chains": {"RPT-INPUT": ["-j ACCEPT"]}, "jumps": {"INPUT": ["RPT-INPUT"]}}}
    agent.engine.apply({"bundle": make_bundle(v4=spec), "version": 41, "confirm_timeout": 0})
    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=0)
    assert run_all(deployment) == ["confirmed"]
    assert deployment.device_deployments.get().version == 42


def test_rollout_waves_advance_and_halt_on_first_failure(
    tmp_path, console_key, policy, django_capture_on_commit_callbacks, monkeypatch
):
    _, group = policy
    enqueued: list[int] = []
    monkeypatch.setattr(services, "enqueue_device_deployments", lambda ids: enqueued.extend(ids))
    with local_agent(tmp_path / "ok", console_key) as ok:
        devices = [make_device(f"web-{i}", group=group, agent=ok) for i in range(5)]
        # web-2 points at a dead port and is given up at once
        Device.objects.filter(pk=devices[2].pk).update(agent_port=free_port())
        assert services.plan_waves(5, {"canary": 1, "wave_size": 2}) == [1, 2, 2]
        assert services.plan_waves(10, {"canary": 1, "wave_percent": 25}) == [1, 3, 3, 3]
        with django_capture_on_commit_callbacks(execute=True):
            deployment = services.deploy_create(
                device_group=group.pk, rollout={"canary": 1, "wave_size": 2}
            )
        assert [w["size"] for w in deployment.waves] == [1, 2, 2]
        assert len(enqueued) == 1  # only the canary
        with django_capture_on_commit_callbacks(execute=True):
            services.device_deployment_run(device_deployment_id=enqueued[0])
        assert len(enqueued) == 3  # canary ok → wave 1 enqueued
        with django_capture_on_commit_callbacks(execute=True):
            for dd_id in enqueued[1:]:
                services.device_deployment_run(device_deployment_id=dd_id, final_attempt=True)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.HALTED and len(enqueued) == 3
    assert [w["state"] for w in deployment.waves] == ["done", "failed", "halted"]
    states = dict(deployment.device_deployments.values_list("device__name", "state"))
    assert states == {
        "web-0": "confirmed",
        "web-1": "confirmed",
        "web-2": "failed",
        "web-3": "skipped",
        "web-4": "skipped",
    }
    summary = services.deployment_summary(deployment)["waves"]
    assert summary[1]["states"] == {"confirmed": 1, "failed": 1} and summary[2]["states"] == {
        "skipped": 2
    }


def test_rollout_without_halt_continues(
    tmp_path, console_key, policy, django_capture_on_commit_callbacks, monkeypatch
):
    _, group = policy
    enqueued: list[int] = []
    monkeypatch.setattr(services, "enqueue_device_deployments", lambda ids: enqueued.extend(ids))
    devices = [
        make_device(
            f"web-{i}",
            group=group,
            port=free_port(),
            agent_public_key=console_key,
            agent_cert_fingerprint="ab" * 32,
        )
        for i in range(3)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        deployment = services.deploy_create(
            devices=[d.pk for d in devices], rollout={"wave_size": 1, "halt_on_failure": False}
        )
    while enqueued:
        with django_capture_on_commit_callbacks(execute=True):
            services.device_deployment_run(device_deployment_id=enqueued.pop(0), final_attempt=True)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.FAILED
    assert [w["state"] for w in deployment.waves] == ["failed"] * 3


def test_status_poll_reports_drift_audits_and_repairs(
    agent, policy, django_capture_on_commit_callbacks, monkeypatch
):
    from core.audit.models import AuditEntry

    _, group = policy
    device = make_device("web-1", group=group, agent=agent, auto_repair=True)
    run_all(services.deploy_create(devices=[device.pk], confirm_timeout=0))
    assert services.status_poll(device_id=device.pk)["drifted"] is False
    device.refresh_from_db()
    assert (
        device.status == "online"
        and device.last_seen_at
        and device.facts.get("backend") == "recording"
    )

    # a hand-made change inside our chain
    agent.dp.tables["v4"]["filter"]["RPT-INPUT"].insert(
        0, "-A RPT-INPUT -s 203.0.113.9/32 -j ACCEPT"
    )
    enqueued: list[int] = []
    monkeypatch.setattr(services, "enqueue_device_deployments", lambda ids: enqueued.extend(ids))
    with django_capture_on_commit_callbacks(execute=True):
        result = services.status_poll(device_id=device.pk)
    device.refresh_from_db()
    assert result["drifted"] and device.drifted and "no rpt comment" in device.drift_diff
    assert AuditEntry.objects.filter(action="drift_detected", object_id=str(device.pk)).exists()
    repair = Deployment.objects.get(pk=result["repair"])
    assert repair.trigger == DeploymentTrigger.REPAIR and len(enqueued) == 1
    assert AuditEntry.objects.filter(action="drift_repaired", object_id=str(device.pk)).exists()
    # a second poll while the repair is under way does not start another one
    assert services.status_poll(device_id=device.pk)["repair"] is None


def test_status_poll_marks_unreachable_agent_offline(policy):
    device = make_device(
        "web-1",
        port=free_port(),
        agent_public_key=console_public_key_b64(),
        agent_cert_fingerprint="ab" * 32,
        status="online",
    )
    assert services.status_poll(device_id=device.pk)["status"] == "offline"
    assert Device.objects.get(pk=device.pk).status == "offline"


def test_counters_survive_resets_and_never_look_like_zero():
    device = make_device("web-1")
    rule = "8c1f8f55-64d5-4b5a-9d3e-6a7f1c0e2b11"
    t0 = timezone.now()
    services.counters_ingest(device=device, counters={rule: {"packets": 10, "bytes": 1000}}, at=t0)
    services.counters_ingest(
        device=device, counters={rule: {"packets": 15, "bytes": 1500}}, at=t0 + timedelta(minutes=1)
    )
    c = RuleCounter.objects.get()
    assert (c.packets, c.bytes, c.last_hit_at) == (15, 1500, t0 + timedelta(minutes=1))
    # counters went back to 3: the chain was rewritten; 3 packets are new traffic, not -12
    services.counters_ingest(
        device=device, counters={rule: {"packets": 3, "bytes": 300}}, at=t0 + timedelta(minutes=2)
    )
    c.refresh_from_db()
    assert (c.packets, c.bytes, c.last_hit_at) == (18, 1800, t0 + timedelta(minutes=2))
    # unchanged raw values: no traffic, last hit stays
    services.counters_ingest(
        device=device, counters={rule: {"packets": 3, "bytes": 300}}, at=t0 + timedelta(minutes=3)
    )
    c.refresh_from_db()
    assert c.packets == 18 and c.last_hit_at == t0 + timedelta(minutes=2)
    # a reboot (boot id changed) with more packets than before: all of them are new
    services.counters_ingest(
        device=device,
        counters={rule: {"packets": 20, "bytes": 2000}},
        at=t0 + timedelta(minutes=4),
        reset=True,
    )
    c.refresh_from_db()
    assert c.packets == 38 and c.bytes == 3800
    services.counters_ingest(device=device, counters={"not-a-uuid": {"packets": 1}}, at=t0)
    assert RuleCounter.objects.count() == 1


def test_unused_rules_report(policy):
    from agents.selectors import unused_rules

    ruleset, group = policy
    device = make_device("web-1", group=group)
    used, idle = list(ruleset.rules.order_by("position"))
    now = timezone.now()
    services.counters_ingest(
        device=device,
        counters={
            str(used.uuid): {"packets": 5, "bytes": 50},
            str(idle.uuid): {"packets": 0, "bytes": 0},
        },
        at=now,
    )
    report = unused_rules(since=now - timedelta(days=7))
    assert [r["rule"] for r in report] == [str(idle.uuid)]
    assert report[0]["counted_since"] is not None and report[0]["last_hit_at"] is None


def test_sweeper_fails_stuck_deployments_with_reason(policy):
    _, group = policy
    device = make_device("web-1", group=group, port=free_port())
    deployment = services.deploy_create(devices=[device.pk])
    dd = deployment.device_deployments.get()
    DeviceDeployment.objects.filter(pk=dd.pk).update(state="pushing")
    assert services.sweep_stuck() == 0
    later = timezone.now() + timedelta(hours=1)
    assert services.sweep_stuck(now=later) == 1
    dd.refresh_from_db()
    assert dd.state == "failed" and dd.error.startswith("stuck in pushing for ")
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.FAILED


def test_compile_error_fails_without_retry(agent):
    from rules.models import RuleSet

    ruleset = RuleSet.objects.create(name="bad")
    from rules.models import Rule

    Rule.objects.create(
        ruleset=ruleset, chain="input", action="accept", protocol="udp", dports=["70000"]
    )
    device = make_device("web-1", agent=agent)
    device.rulesets.add(ruleset)
    deployment = services.deploy_create(devices=[device.pk])
    assert run_all(deployment) == ["failed"]
    dd = deployment.device_deployments.get()
    assert "does not compile" in dd.error and dd.attempts == 1
