"""GET /metrics: who may scrape it, and the fleet's numbers read from the database."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agents.choices import DeploymentStatus, DeviceDeploymentState
from agents.models import Deployment, DeviceDeployment
from agents.services.transitions import move
from console.metrics import audit, queue
from console.metrics.audit import DUE_KEY
from core.audit.choices import AuditAction
from core.audit.models import AuditEntry
from core.audit.services import record
from core.audit.verification import write_checkpoint
from tests.support.deploy import make_device
from tests.support.tamper import tamper

pytestmark = pytest.mark.django_db
S = DeviceDeploymentState
TOKEN = "scrape-secret-123"


@pytest.fixture(autouse=True)
def metrics_settings(settings, monkeypatch):
    settings.RAMPART_METRICS_TOKEN = TOKEN
    # a due audit check runs inline: a thread would not see this test's transaction
    monkeypatch.setattr(audit, "start", lambda check: check())
    settings.CELERY_BROKER_URL = "filesystem://"
    cache.clear()  # the audit check's result and its interval live in the shared cache
    yield
    cache.clear()


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    values = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_metrics_need_a_role_or_the_bearer_token(client, users, make_user, api_client_for):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics")["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", **bearer("wrong")).status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Token nonsense").status_code == 401
    assert client.get("/metrics", **bearer(TOKEN)).status_code == 200
    assert api_client_for(users["viewer"]).get("/metrics").status_code == 200
    assert api_client_for(make_user("nobody")).get("/metrics").status_code == 403
    client.force_login(users["viewer"])
    assert client.get("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405


def test_no_bearer_token_is_accepted_when_none_is_set(client, settings):
    settings.RAMPART_METRICS_TOKEN = ""
    assert client.get("/metrics", **bearer("")).status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer").status_code == 401


def _finish(dd: DeviceDeployment, state: str, seconds: float) -> None:
    """Move `dd` to a terminal state `seconds` after its creation (transitions.move)."""
    created = timezone.now() - timedelta(seconds=seconds)
    DeviceDeployment.objects.filter(pk=dd.pk).update(created_at=created)
    dd.refresh_from_db()
    move(dd, state)


def test_fleet_numbers_follow_the_database(client):
    web1 = make_device("web-1", status="online", last_seen_at=timezone.now())
    web2 = make_device("web-2", status="online", drifted=True)
    db1 = make_device("db-1", status="offline")
    make_device("new-1")
    m = scrape(client, **bearer(TOKEN))
    assert m[("rampart_devices", (("status", "online"),))] == 2
    assert m[("rampart_devices", (("status", "offline"),))] == 1
    assert m[("rampart_devices", (("status", "unknown"),))] == 1
    assert m[("rampart_devices_drifted", ())] == 1
    assert m[("rampart_device_online", (("device", "web-1"),))] == 1
    assert m[("rampart_device_online", (("device", "db-1"),))] == 0
    assert m[("rampart_device_drifted", (("device", "web-2"),))] == 1
    seen = m[("rampart_device_last_seen_timestamp_seconds", (("device", "web-1"),))]
    assert abs(seen - web1.last_seen_at.timestamp()) < 1e-3
    assert ("rampart_device_last_seen_timestamp_seconds", (("device", "new-1"),)) not in m
    assert m[("rampart_deployments", (("status", "running"),))] == 0
    assert m[("rampart_device_deployment_duration_seconds_count", (("state", "failed"),))] == 0

    deployment = Deployment.objects.create(status=DeploymentStatus.RUNNING)
    ok = DeviceDeployment.objects.create(deployment=deployment, device=web1)
    failed = DeviceDeployment.objects.create(deployment=deployment, device=web2)
    waiting = DeviceDeployment.objects.create(deployment=deployment, device=db1)
    _finish(ok, S.CONFIRMED, 3)
    _finish(failed, S.FAILED, 45)
    record(AuditAction.DRIFT_DETECTED, web2, after={"drifted": True})
    record(AuditAction.DRIFT_DETECTED, web2, after={"drifted": True})
    record(AuditAction.DRIFT_REPAIRED, web2)

    m = scrape(client, **bearer(TOKEN))
    assert m[("rampart_deployments", (("status", "running"),))] == 1
    assert m[("rampart_device_deployments", (("state", "confirmed"),))] == 1
    assert m[("rampart_device_deployments", (("state", "queued"),))] == 1
    hist = "rampart_device_deployment_duration_seconds"
    assert m[(f"{hist}_bucket", (("le", "2.5"), ("state", "confirmed")))] == 0
    assert m[(f"{hist}_bucket", (("le", "5.0"), ("state", "confirmed")))] == 1
    assert m[(f"{hist}_bucket", (("le", "30.0"), ("state", "failed")))] == 0
    assert m[(f"{hist}_bucket", (("le", "60.0"), ("state", "failed")))] == 1
    assert m[(f"{hist}_bucket", (("le", "+Inf"), ("state", "failed")))] == 1
    assert m[(f"{hist}_count", (("state", "failed"),))] == 1
    assert m[(f"{hist}_sum", (("state", "confirmed"),))] == pytest.approx(3, abs=1)
    assert m[(f"{hist}_count", (("state", "rolled_back"),))] == 0
    assert waiting.pk and m[("rampart_drift_detections_total", ())] == 2
    assert m[("rampart_drift_repairs_total", ())] == 1
    assert ("rampart_celery_queue_length", (("queue", "celery"),)) not in m  # not Redis


def test_audit_chain_status_is_checked_once_per_interval(client, users):
    m = scrape(client, **bearer(TOKEN))
    entries = AuditEntry.objects.count()
    assert entries and m[("rampart_audit_entries", ())] == entries  # the users' creation
    assert m[("rampart_audit_chain_ok", ())] == 1
    assert m[("rampart_audit_verified_entries", ())] == entries
    checked_at = m[("rampart_audit_last_verify_timestamp_seconds", ())]
    assert m[("rampart_audit_last_verify_success_timestamp_seconds", ())] == checked_at

    target = AuditEntry.objects.order_by("seq").first()
    tamper("UPDATE audit_auditentry SET actor = %s WHERE id = %s", ["mallory", target.pk])
    m = scrape(client, **bearer(TOKEN))
    assert m[("rampart_audit_chain_ok", ())] == 1  # not due again yet: the last result stands
    cache.delete(DUE_KEY)  # the interval has passed
    m = scrape(client, **bearer(TOKEN))
    assert m[("rampart_audit_chain_ok", ())] == 0
    assert m[("rampart_audit_verified_entries", ())] == 0
    assert m[("rampart_audit_last_verify_timestamp_seconds", ())] > checked_at
    assert m[("rampart_audit_last_verify_success_timestamp_seconds", ())] == checked_at


def test_the_newest_audit_checkpoint_is_exported(client, users):
    m = scrape(client, **bearer(TOKEN))
    assert ("rampart_audit_last_checkpoint_timestamp_seconds", ()) not in m  # none yet
    checkpoint = write_checkpoint()
    m = scrape(client, **bearer(TOKEN))
    stamp = m[("rampart_audit_last_checkpoint_timestamp_seconds", ())]
    assert stamp == pytest.approx(checkpoint.time.timestamp())
    assert m[("rampart_audit_last_checkpoint_seq", ())] == checkpoint.seq


def test_audit_chain_status_is_absent_when_checks_are_off(client, settings):
    settings.RAMPART_METRICS_AUDIT_VERIFY_SECONDS = 0
    m = scrape(client, **bearer(TOKEN))
    assert ("rampart_audit_chain_ok", ()) not in m
    assert ("rampart_audit_entries", ()) in m


def test_request_latency_is_labelled_by_route_not_path(client, users):
    client.force_login(users["viewer"])
    client.get("/api/v1/devices/")
    client.get("/no/such/page/12345")
    m = scrape(client)
    routes = {
        dict(labels)["route"]
        for (name, labels) in m
        if name == "rampart_http_request_duration_seconds_count"
    }
    assert "unresolved" in routes
    assert not any("12345" in r or r.startswith("/") for r in routes)
    assert any("device" in r for r in routes), routes


@pytest.fixture
def redis_broker(settings):
    """A Redis server of this test's own on a free port (skipped without redis-server)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    settings.CELERY_BROKER_URL = url
    client = queue._client(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except Exception:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield client
    proc.terminate()
    proc.wait(timeout=10)


def test_celery_queue_depth_counts_every_priority_list(client, redis_broker, settings):
    keys = queue.queue_keys(settings.CELERY_TASK_DEFAULT_QUEUE)
    redis_broker.rpush(keys[0], "a", "b")
    redis_broker.rpush(keys[-1], "c")
    m = scrape(client, **bearer(TOKEN))
    assert m[("rampart_celery_broker_up", ())] == 1
    assert m[("rampart_celery_queue_length", (("queue", settings.CELERY_TASK_DEFAULT_QUEUE),))] == 3
