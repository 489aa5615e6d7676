"""Watching the fleet: status polls (online/offline, drift and its repair)."""

from __future__ import annotations

import pytest

from agents import enqueue, services
from agents.choices import DeploymentTrigger
from agents.client import console_public_key_b64
from agents.models import Deployment
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

    # a hand-made change inside our chain
    agent.dp.tables["v4"]["filter"]["RPT-INPUT"].insert(
        0, "-A RPT-INPUT -s 203.0.113.9/32 -j ACCEPT"
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
