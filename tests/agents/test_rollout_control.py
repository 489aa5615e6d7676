"""Resuming and cancelling a rollout over the API: real agents in this process, audited,
refused with 409 when the deployment's status does not allow it."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from agents import enqueue, services
from agents.choices import DeploymentStatus
from agents.models import Deployment, DeviceDeployment
from agents.services.transitions import S, move
from core.audit.models import AuditEntry
from rules.models import Device
from tests.agents.helpers import free_port
from tests.support.deploy import local_agent, make_device

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]

URL = "/api/v1/deployments/"


@pytest.fixture
def enqueued(monkeypatch) -> list[int]:
    """The device deployment ids sent to the workers, in order."""
    sent: list[int] = []
    monkeypatch.setattr(enqueue, "device_deployments", lambda ids: sent.extend(ids))
    return sent


def _run(ids: list[int], capture) -> None:
    """What the worker does with each enqueued device deployment (the last attempt)."""
    while ids:
        with capture(execute=True):
            services.device_deployment_run(device_deployment_id=ids.pop(0), final_attempt=True)


def _states(deployment: Deployment) -> dict[str, str]:
    return dict(deployment.device_deployments.values_list("device__name", "state"))


def _halted_rollout(group, agent, enqueued, capture) -> tuple[Deployment, list[Device]]:
    """Five devices in waves 1+2+2; web-2 (wave 2) is down, so the rollout halts after it."""
    devices = [make_device(f"web-{i}", group=group, agent=agent) for i in range(5)]
    Device.objects.filter(pk=devices[2].pk).update(agent_port=free_port())
    with capture(execute=True):
        deployment = services.deploy_create(
            device_group=group.pk, rollout={"canary": 1, "wave_size": 2}, reason="CI build 42"
        )
    _run(enqueued, capture)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.HALTED
    return deployment, devices


def test_halt_keeps_the_reason_and_resume_runs_the_next_wave(
    tmp_path, deploy_console, policy, api, enqueued, django_capture_on_commit_callbacks
):
    _, group = policy
    capture = django_capture_on_commit_callbacks
    with local_agent(tmp_path / "agent", deploy_console) as agent:
        deployment, _ = _halted_rollout(group, agent, enqueued, capture)
        halted = api.get(f"{URL}{deployment.pk}/").json()
        assert halted["reason"] == "CI build 42"
        assert halted["halt_reason"] == "wave 2 of 3: 1 device(s) failed"
        assert [(e["event"], e["wave"], e["by"]) for e in halted["events"]] == [
            ("halted", 2, "system")
        ]
        with capture(execute=True):
            resp = api.post(
                f"{URL}{deployment.pk}/resume/", {"reason": "web-2 is retired"}, format="json"
            )
        assert resp.status_code == 200, resp.content
        body = resp.json()
        assert body["status"] == "running" and body["current_wave"] == 2
        assert body["reason"] == "CI build 42" and body["halt_reason"] == ""
        assert [(e["event"], e["by"]) for e in body["events"]] == [
            ("halted", "system"),
            ("resumed", "operator"),
        ]
        assert "web-2 is retired" in body["events"][1]["note"]
        third = {d["id"] for d in body["devices"] if d["wave"] == 2}
        assert set(enqueued) == third and {
            d["state"] for d in body["devices"] if d["wave"] == 2
        } == {"queued"}
        _run(enqueued, capture)
    deployment.refresh_from_db()
    # the failed device was not pushed again, so the deployment as a whole failed
    assert deployment.status == DeploymentStatus.FAILED
    assert [w["state"] for w in deployment.waves] == ["done", "failed", "done"]
    assert _states(deployment) == {
        "web-0": "confirmed",
        "web-1": "confirmed",
        "web-2": "failed",
        "web-3": "confirmed",
        "web-4": "confirmed",
    }
    assert deployment.reason == "CI build 42"
    entry = AuditEntry.objects.get(action="deploy_resume")
    assert entry.actor == "operator" and entry.object_id == str(deployment.pk)
    assert entry.reason == "web-2 is retired" and entry.extra["requeued"] == 2


def test_resume_with_retry_failed_pushes_the_failed_wave_again(
    tmp_path, deploy_console, policy, api, enqueued, django_capture_on_commit_callbacks
):
    _, group = policy
    capture = django_capture_on_commit_callbacks
    with local_agent(tmp_path / "agent", deploy_console) as agent:
        deployment, devices = _halted_rollout(group, agent, enqueued, capture)
        failed = DeviceDeployment.objects.get(deployment=deployment, device=devices[2])
        old_version = failed.version
        Device.objects.filter(pk=devices[2].pk).update(agent_port=agent.port)  # back up
        with capture(execute=True):
            resp = api.post(f"{URL}{deployment.pk}/resume/", {"retry_failed": True}, format="json")
        assert resp.status_code == 200, resp.content
        assert resp.json()["current_wave"] == 1 and enqueued == [failed.pk]
        failed.refresh_from_db()
        assert failed.state == S.QUEUED and failed.attempts == 0 and failed.error == ""
        assert failed.version > (old_version or 0)  # a fresh version, never a replay
        _run(enqueued, capture)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.SUCCEEDED
    assert set(_states(deployment).values()) == {"confirmed"}
    assert [w["state"] for w in deployment.waves] == ["done", "done", "done"]


def test_cancel_skips_waiting_devices_and_lets_a_push_in_flight_finish(
    tmp_path, deploy_console, policy, api, enqueued, django_capture_on_commit_callbacks
):
    _, group = policy
    capture = django_capture_on_commit_callbacks
    with local_agent(tmp_path / "agent", deploy_console) as agent:
        devices = [make_device(f"web-{i}", group=group, agent=agent) for i in range(4)]
        with capture(execute=True):
            deployment = services.deploy_create(
                devices=[d.pk for d in devices], rollout={"wave_size": 2}, reason="nightly"
            )
        assert len(enqueued) == 2
        in_flight = DeviceDeployment.objects.select_related("device").get(pk=enqueued[0])
        move(in_flight, S.COMPILING, "attempt 1")  # a worker has started on web-0
        resp = api.post(f"{URL}{deployment.pk}/cancel/", {"reason": "change freeze"}, format="json")
        assert resp.status_code == 200, resp.content
        body = resp.json()
        assert body["status"] == "cancelled" and body["reason"] == "nightly"
        assert body["halt_reason"] == "cancelled by operator: change freeze"
        assert [w["state"] for w in body["waves"]] == ["cancelled", "cancelled"]
        assert _states(deployment) == {
            "web-0": "compiling",
            "web-1": "skipped",
            "web-2": "skipped",
            "web-3": "skipped",
        }
        skipped = DeviceDeployment.objects.get(deployment=deployment, device=devices[1])
        assert skipped.transitions[-1]["note"] == (
            "deployment cancelled by operator: change freeze"
        )
        # the queued task of web-1 finds it skipped; web-0's push finishes
        _run(enqueued, capture)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.CANCELLED
    assert _states(deployment)["web-0"] == "confirmed"
    assert _states(deployment)["web-1"] == "skipped"
    entry = AuditEntry.objects.get(action="deploy_cancel")
    assert entry.actor == "operator" and entry.reason == "change freeze"
    assert entry.before == {"status": "running"} and entry.after == {"status": "cancelled"}
    assert entry.extra == {"skipped": 3, "in_flight": 1}


def test_refusals_are_409_with_the_reason_and_viewers_get_403(
    policy, api, viewer_api, enqueued, django_capture_on_commit_callbacks
):
    _, group = policy
    devices = [make_device(f"web-{i}", group=group, port=free_port()) for i in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        deployment = services.deploy_create(devices=[d.pk for d in devices])
    running = api.post(f"{URL}{deployment.pk}/resume/", {}, format="json")
    assert running.status_code == 409
    assert running.json() == {
        "non_field_errors": [
            f"deployment #{deployment.pk} is running: only a halted rollout can be resumed"
        ]
    }
    for action in ("resume", "cancel"):
        assert viewer_api.post(f"{URL}{deployment.pk}/{action}/", {}).status_code == 403
        assert api.post(f"{URL}999999/{action}/", {}).status_code == 404
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.RUNNING
    assert api.post(f"{URL}{deployment.pk}/cancel/", {}).status_code == 200
    again = api.post(f"{URL}{deployment.pk}/cancel/", {})
    assert again.status_code == 409
    assert "is cancelled: only a queued, running or halted rollout" in str(again.json())
    assert api.post(f"{URL}{deployment.pk}/resume/", {}).status_code == 409
    assert AuditEntry.objects.filter(action="deploy_cancel").count() == 1
    assert not AuditEntry.objects.filter(action="deploy_resume").exists()


def test_resume_supersedes_devices_a_newer_deployment_has_taken(
    deploy_console, policy, enqueued, users, django_capture_on_commit_callbacks
):
    """A device deployed again while the rollout was halted is not sent the older policy."""
    _, group = policy
    capture = django_capture_on_commit_callbacks
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
    with capture(execute=True):
        old = services.deploy_create(devices=[d.pk for d in devices], rollout={"wave_size": 1})
    _run(enqueued, capture)  # web-0 is down: halted after wave 1
    old.refresh_from_db()
    assert old.status == DeploymentStatus.HALTED and _states(old)["web-2"] == "skipped"
    with capture(execute=True):
        newer = services.deploy_create(devices=[devices[2].pk])
    enqueued.clear()
    with capture(execute=True):
        services.deployment_resume(deployment_id=old.pk, user=users["operator"])
    assert _states(old) == {"web-0": "failed", "web-1": "queued", "web-2": "superseded"}
    superseded = DeviceDeployment.objects.get(deployment=old, device=devices[2])
    assert superseded.superseded_by == DeviceDeployment.objects.get(deployment=newer)
    assert enqueued == [DeviceDeployment.objects.get(deployment=old, device=devices[1]).pk]


def test_schema_documents_resume_and_cancel():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for action in ("resume", "cancel"):
        operation = schema["paths"][f"/api/v1/deployments/{{id}}/{action}/"]["post"]
        assert set(operation["responses"]) >= {"200", "409"}
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
            f"Deployment{action.capitalize()}Request"
        )
