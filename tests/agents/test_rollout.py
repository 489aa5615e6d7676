"""Rollouts in waves: the canary first, the next wave on success, halt on failure."""

from __future__ import annotations

import pytest

from agents import enqueue, selectors, services
from agents.choices import DeploymentStatus
from rules.models import Device
from tests.agents.helpers import free_port
from tests.support.deploy import local_agent, make_device

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]


def test_rollout_waves_advance_and_halt_on_first_failure(
    tmp_path, deploy_console, policy, django_capture_on_commit_callbacks, monkeypatch
):
    _, group = policy
    enqueued: list[int] = []
    monkeypatch.setattr(enqueue, "device_deployments", lambda ids: enqueued.extend(ids))
    with local_agent(tmp_path / "ok", deploy_console) as ok:
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
    summary = selectors.deployment_summary(deployment)["waves"]
    assert summary[1]["states"] == {"confirmed": 1, "failed": 1} and summary[2]["states"] == {
        "skipped": 2
    }


def test_rollout_without_halt_continues(
    tmp_path, deploy_console, policy, django_capture_on_commit_callbacks, monkeypatch
):
    _, group = policy
    enqueued: list[int] = []
    monkeypatch.setattr(enqueue, "device_deployments", lambda ids: enqueued.extend(ids))
    devices = [
        make_device(
            f"web-{i}",
            group=group,
            port=free_port(),
            agent_public_key=deploy_console,
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


def test_a_wave_whose_devices_were_all_superseded_is_passed_over(
    deploy_console, policy, django_capture_on_commit_callbacks, monkeypatch
):
    """Nothing would ever report for such a wave: the rollout must not wait for it."""
    _, group = policy
    enqueued: list[int] = []
    monkeypatch.setattr(enqueue, "device_deployments", lambda ids: enqueued.extend(ids))
    devices = [
        make_device(
            f"web-{i}",
            group=group,
            port=free_port(),
            agent_public_key=deploy_console,
            agent_cert_fingerprint="ab" * 32,
        )
        for i in range(2)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        older = services.deploy_create(
            devices=[d.pk for d in devices], rollout={"wave_size": 1, "halt_on_failure": False}
        )
        services.deploy_create(devices=[devices[1].pk])  # takes web-1 from the second wave
    with django_capture_on_commit_callbacks(execute=True):
        services.device_deployment_run(device_deployment_id=enqueued[0], final_attempt=True)
    older.refresh_from_db()
    assert older.status == DeploymentStatus.FAILED
    assert [w["state"] for w in older.waves] == ["failed", "done"]
    assert dict(older.device_deployments.values_list("device__name", "state")) == {
        "web-0": "failed",
        "web-1": "superseded",
    }
