"""Watching the fleet: status polls (online/offline, drift and its repair)."""

from __future__ import annotations

import pytest

from agents import enqueue, services
from agents.choices import DeploymentTrigger
from agents.client import console_public_key_b64
from agents.models import Deployment, DevicePoll
from core.audit.models import AuditEntry
from rules.models import Device
from tests.agents.helpers import free_port, run_all
from tests.support.deploy import make_device

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]


def test_status_poll_reports_drift_audits_and_repairs(
    agent, policy, django_capture_on_commit_callbacks, monkeypatch
):
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

    # a hand-made change inside our chain (seen once the agent's last kernel read is older
    # than its recheck window: here at once)
    agent.server.generation.recheck_seconds = 0
    agent.dp.tables["v4"]["filter"]["RPT-INPUT"].insert(
        0, "-A RPT-INPUT -s 198.19.255.9/32 -j ACCEPT"
    )
    enqueued: list[int] = []
    monkeypatch.setattr(enqueue, "device_deployments", lambda ids: enqueued.extend(ids))
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


def test_conditional_poll_sends_the_generation_and_records_the_small_answer(agent, policy):
    _, group = policy
    device = make_device("web-1", group=group, agent=agent)
    run_all(services.deploy_create(devices=[device.pk], confirm_timeout=0))
    (first,) = services.status_poll_batch(device_ids=[device.pk])
    assert "unchanged" not in first
    generation = DevicePoll.objects.get(device=device).generation
    assert generation == agent.server.generation.generation
    Device.objects.filter(pk=device.pk).update(status="offline", last_seen_at=None)
    (again,) = services.status_poll_batch(device_ids=[device.pk])
    device.refresh_from_db()
    assert again["unchanged"] is True and device.status == "online" and device.last_seen_at
    assert device.facts.get("backend") == "recording"  # the full answer's facts are kept
    # an apply moves the generation: the next poll gets (and stores) the full status
    agent.dp.tables["v4"]["filter"]["RPT-INPUT"].insert(0, "-A RPT-INPUT -j ACCEPT")
    agent.server.generation.recheck_seconds = 0
    (drifted,) = services.status_poll_batch(device_ids=[device.pk])
    assert "unchanged" not in drifted and drifted["drifted"] is True
    assert DevicePoll.objects.get(device=device).generation > generation
    # "poll now" (one device) always asks for the full status: the agent reads its kernel
    assert "unchanged" not in services.status_poll(device_id=device.pk)


def test_batch_poll_isolates_an_unreachable_device(agent, policy):
    _, group = policy
    good = make_device("web-1", group=group, agent=agent)
    bad = make_device(
        "web-2",
        port=free_port(),
        agent_public_key=console_public_key_b64(),
        agent_cert_fingerprint="ab" * 32,
    )
    out = {
        r["device"]: r["status"] for r in services.status_poll_batch(device_ids=[good.pk, bad.pk])
    }
    assert out == {"web-1": "online", "web-2": "offline"}
