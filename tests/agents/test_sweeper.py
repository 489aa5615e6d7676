"""The sweeper: in-flight runs whose worker was lost fail with the reason; queued ones whose
message was lost are sent again (a bounded number of times) and a duplicate never pushes twice."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import enqueue, services
from agents.choices import DeploymentStatus
from agents.models import DeviceDeployment
from agents.services.sweeper import lost_seconds, stuck_seconds
from rules.models import Device
from tests.agents.helpers import free_port
from tests.support.deploy import make_device

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]


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


def _queued(policy, name="web-1"):
    _, group = policy
    device = make_device(name, group=group, port=free_port())
    deployment = services.deploy_create(devices=[device.pk])
    return deployment, deployment.device_deployments.get()


def test_lost_queued_message_is_sent_again_then_failed_when_no_worker_consumes(
    policy, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list[int] = []
    monkeypatch.setattr(enqueue, "device_deployments", lambda ids: sent.extend(ids))
    deployment, dd = _queued(policy)
    limit = lost_seconds()
    assert services.sweep_stuck() == 0 and sent == []  # just queued: not lost
    now = timezone.now()
    for n in range(1, 4):  # DEPLOY_MAX_REQUEUES, each one a lost-limit after the last
        now += timedelta(seconds=limit + 1)
        with django_capture_on_commit_callbacks(execute=True):
            assert services.sweep_stuck(now=now) == 1
        dd.refresh_from_db()
        assert dd.state == "queued" and dd.requeues == n and sent == [dd.pk] * n
        assert "sent again: no worker took it" in dd.transitions[-1]["note"]
    now += timedelta(seconds=limit + 1)
    assert services.sweep_stuck(now=now) == 1 and len(sent) == 3
    dd.refresh_from_db()
    assert dd.state == "failed" and "sent again 3 times, and no worker took any work" in dd.error
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.FAILED


def test_queued_behind_a_backlog_is_not_failed_while_workers_consume(policy, monkeypatch):
    monkeypatch.setattr(enqueue, "device_deployments", lambda ids: None)
    _, dd = _queued(policy)
    later = timezone.now() + timedelta(seconds=lost_seconds() + 1)
    DeviceDeployment.objects.filter(pk=dd.pk).update(requeues=3)
    _, busy = _queued(policy, "web-2")  # another device deployment a worker took just now
    DeviceDeployment.objects.filter(pk=busy.pk).update(heartbeat_at=later)
    assert services.sweep_stuck(now=later) == 0
    dd.refresh_from_db()
    assert dd.state == "queued"


def test_queued_with_a_live_claim_or_a_later_wave_is_left_alone(policy, monkeypatch):
    monkeypatch.setattr(enqueue, "device_deployments", lambda ids: None)
    _, group = policy
    devices = [make_device(f"web-{i}", group=group, port=free_port()) for i in range(2)]
    deployment = services.deploy_create(
        devices=[d.pk for d in devices], rollout={"wave_size": 1, "halt_on_failure": False}
    )
    first, second = deployment.device_deployments.order_by("wave")
    assert (first.wave, second.wave) == (0, 1)
    later = timezone.now() + timedelta(seconds=lost_seconds() + 1)
    # a worker took the first one (waiting for the device's lease, retrying): alive
    DeviceDeployment.objects.filter(pk=first.pk).update(heartbeat_at=later - timedelta(seconds=5))
    assert services.sweep_stuck(now=later) == 0
    assert DeviceDeployment.objects.filter(state="queued", requeues=0).count() == 2


def test_in_flight_run_with_a_recent_heartbeat_is_not_failed(policy):
    _, dd = _queued(policy)
    later = timezone.now() + timedelta(seconds=stuck_seconds() + 1)
    DeviceDeployment.objects.filter(pk=dd.pk).update(
        state="pushing", heartbeat_at=later - timedelta(seconds=1)
    )
    assert services.sweep_stuck(now=later) == 0
    assert services.sweep_stuck(now=later + timedelta(seconds=stuck_seconds())) == 1


def test_a_duplicate_message_never_pushes_twice(agent, policy):
    """What a re-enqueue (or the broker's redelivery) costs once the run has finished, and
    while it runs: the terminal state and the device's push lease stop it."""
    _, group = policy
    device = make_device("web-1", group=group, agent=agent)
    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=0)
    dd = deployment.device_deployments.get()
    assert services.device_deployment_run(device_deployment_id=dd.pk) == "confirmed"
    pushes = len(agent.dp.payloads)
    assert services.device_deployment_run(device_deployment_id=dd.pk) == "confirmed"
    assert len(agent.dp.payloads) == pushes
    dd.refresh_from_db()
    assert dd.attempts == 1 and dd.claimed_at <= dd.heartbeat_at

    again = services.deploy_create(devices=[device.pk], confirm_timeout=0)
    dd2 = again.device_deployments.get()
    # the first delivery holds the lease, mid-push, in another worker process (alive)
    Device.objects.filter(pk=device.pk).update(
        push_lease_owner=f"{socket.gethostname()}:{os.getppid()}:{dd2.pk}",
        push_lease_until=timezone.now() + timedelta(minutes=5),
    )
    with pytest.raises(services.DeviceBusy):
        services.device_deployment_run(device_deployment_id=dd2.pk)
    assert len(agent.dp.payloads) == pushes
    dd2.refresh_from_db()
    assert dd2.state == "queued" and dd2.attempts == 0 and dd2.heartbeat_at is not None
