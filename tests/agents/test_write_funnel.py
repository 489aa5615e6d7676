"""Group commit of a deploy batch (agents/services/write_funnel.py): the writes several
push threads hand in at once commit in one transaction with one audit chain append; one
write's failure neither undoes nor fails the others; every state keeps its own entry."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from agents import enqueue, services
from agents.models import DeviceDeployment
from agents.services.transitions import S, move
from agents.services.write_funnel import FunnelClosed, WriteFunnel, committed, one_commit
from core.audit.models import AuditEntry
from core.audit.services import verify
from tests.agents.helpers import free_port
from tests.support.deploy import make_device, make_policy

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture(autouse=True)
def sent(monkeypatch) -> list[tuple[str, tuple, dict]]:
    calls: list[tuple[str, tuple, dict]] = []
    fake = SimpleNamespace(send_task=lambda name, args, **kw: calls.append((name, args, kw)))
    monkeypatch.setattr(enqueue, "current_app", fake)
    return calls


def _queued(count: int) -> list[DeviceDeployment]:
    _, group = make_policy("web", ports=(80,))
    devices = [make_device(f"web-{i}", group=group, port=free_port()) for i in range(count)]
    deployment = services.deploy_create(devices=[d.pk for d in devices])
    return list(deployment.device_deployments.select_related("device").order_by("id"))


def _hand_in(funnel: WriteFunnel, writes: list) -> tuple[list[threading.Thread], dict]:
    """One thread per write, each blocked in the funnel until served; returns when all
    are waiting (so the next `serve` takes them as one group)."""
    outcome: dict = {}

    def run(i: int, write) -> None:
        try:
            with funnel.active():
                outcome[i] = committed(write)
        except Exception as exc:  # noqa: BLE001 - what the thread got back
            outcome[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(writes)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while funnel._jobs.qsize() < len(writes) and time.monotonic() < deadline:
        time.sleep(0.01)
    return threads, outcome


def _serve(funnel: WriteFunnel, threads: list[threading.Thread]) -> None:
    funnel.serve(lambda: not any(t.is_alive() for t in threads))
    for t in threads:
        t.join()


def _one_move(dd: DeviceDeployment, state: str, note: str):
    """A thread's step: a move inside one_commit, as device_run writes it."""

    def step() -> None:
        with one_commit():
            move(dd, state, note)

    return step


def test_writes_handed_in_together_commit_in_one_append_each_state_audited():
    dds = _queued(3)
    funnel = WriteFunnel()
    before = AuditEntry.objects.count()
    # compiling and pushing of three devices: six states, three threads
    steps = []
    for dd in dds:

        def step(dd=dd) -> None:
            with one_commit():
                move(dd, S.COMPILING, "attempt 1")
                move(dd, S.PUSHING, "version 1")

        steps.append(step)
    threads, outcome = _hand_in(funnel, [lambda s=s: s() for s in steps])
    with CaptureQueriesContext(connection) as queries:
        _serve(funnel, threads)
    assert all(v is None for v in outcome.values())
    assert funnel.groups == 1
    heads = [q for q in queries if q["sql"].startswith('UPDATE "audit_auditchainhead" SET "seq"')]
    assert len(heads) == 1  # one chain append for the three devices
    # two moves of one row: one UPDATE of it
    updates = [q for q in queries if q["sql"].startswith('UPDATE "agents_devicedeployment"')]
    assert len(updates) == 3
    entries = list(AuditEntry.objects.order_by("seq")[before:])
    assert sorted((e.object_id, e.after["state"]) for e in entries) == sorted(
        (str(dd.pk), s) for dd in dds for s in (S.COMPILING, S.PUSHING)
    )
    for dd in dds:
        dd.refresh_from_db()
        assert dd.state == S.PUSHING
        assert [t["state"] for t in dd.transitions] == [S.QUEUED, S.COMPILING, S.PUSHING]
    assert verify()["ok"]


def test_a_failing_write_fails_alone_and_the_group_still_commits():
    dds = _queued(3)
    funnel = WriteFunnel()

    def broken() -> None:
        move(dds[1], S.APPLIED, "applied")
        raise RuntimeError("this device's write breaks")

    writes = [_one_move(dds[0], S.FAILED, "agent identity"), broken]
    writes.append(_one_move(dds[2], S.COMPILING, "attempt 1"))
    threads, outcome = _hand_in(funnel, writes)
    _serve(funnel, threads)
    assert outcome[0] is None and outcome[2] is None
    assert isinstance(outcome[1], RuntimeError)
    states = dict(DeviceDeployment.objects.values_list("pk", "state"))
    assert states == {dds[0].pk: S.FAILED, dds[1].pk: S.QUEUED, dds[2].pk: S.COMPILING}
    audited = {
        (e.object_id, e.after.get("state"))
        for e in AuditEntry.objects.filter(object_type="agents.devicedeployment")
    }
    assert (str(dds[0].pk), S.FAILED) in audited and (str(dds[2].pk), S.COMPILING) in audited
    assert not any(oid == str(dds[1].pk) for oid, _ in audited)  # rolled back with its state
    assert verify()["ok"]


def test_a_closed_funnel_fails_the_waiting_writes_and_runs_later_ones_alone():
    [dd] = _queued(1)
    funnel = WriteFunnel()
    threads, outcome = _hand_in(funnel, [_one_move(dd, S.COMPILING, "attempt 1")])
    funnel.close()
    for t in threads:
        t.join()
    assert isinstance(outcome[0], FunnelClosed)
    with funnel.active():
        _one_move(dd, S.FAILED, "time limit")()  # no serving thread: committed at once
    dd.refresh_from_db()
    assert dd.state == S.FAILED
    assert verify()["ok"]


def test_the_time_limit_in_a_group_writes_nothing_of_it_and_frees_its_threads():
    dds = _queued(2)
    funnel = WriteFunnel()

    def limit() -> None:
        raise SoftTimeLimitExceeded()  # as the signal raises it while the group is written

    writes = [_one_move(dds[0], S.COMPILING, "attempt 1"), limit]
    threads, outcome = _hand_in(funnel, writes)
    with pytest.raises(SoftTimeLimitExceeded):
        funnel.serve(lambda: False)
    funnel.close()
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive()
    assert isinstance(outcome[0], FunnelClosed) and isinstance(outcome[1], FunnelClosed)
    assert set(DeviceDeployment.objects.values_list("state", flat=True)) == {S.QUEUED}
    assert verify()["ok"]


def test_batch_on_threads_one_device_fails_the_others_confirm_each_state_audited(agents):
    _, group = make_policy("web", ports=(80,))
    good = [
        make_device(
            f"web-{i}",
            group=group,
            address=f"127.1.0.{i + 1}",
            port=a.server.server_address[1],
            agent=a,
        )
        for i, a in enumerate(agents[:2])
    ]
    impostor = make_device(
        "web-impostor",
        group=group,
        address="127.1.0.3",
        port=agents[2].server.server_address[1],
        agent=agents[2],
        agent_cert_fingerprint="ab" * 32,
    )
    deployment = services.deploy_create(devices=[d.pk for d in (*good, impostor)])
    ids = {dd.device.name: dd.pk for dd in deployment.device_deployments.select_related("device")}
    results = services.device_deployment_batch(device_deployment_ids=list(ids.values()), threads=3)
    assert {name: results[pk] for name, pk in ids.items()} == {
        "web-0": "confirmed",
        "web-1": "confirmed",
        "web-impostor": "failed",
    }
    audited: dict[str, list[str]] = {}
    for entry in AuditEntry.objects.filter(object_type="agents.devicedeployment").order_by("seq"):
        audited.setdefault(entry.object_id, []).append(entry.after["state"])
    flow = [S.COMPILING, S.PUSHING, S.APPLIED, S.CONFIRMED]
    assert audited[str(ids["web-0"])] == flow and audited[str(ids["web-1"])] == flow
    assert audited[str(ids["web-impostor"])] == [S.COMPILING, S.PUSHING, S.FAILED]
    for dd in DeviceDeployment.objects.filter(deployment=deployment).select_related("device"):
        assert [t["state"] for t in dd.transitions][1:] == audited[str(dd.pk)]
        assert dd.device.push_lease_owner is None  # every lease given back
    deployment.refresh_from_db()
    assert deployment.status == "failed"  # moved on once, by the batch
    assert verify()["ok"]
    # redelivered (its worker died): nothing pushed twice, nothing audited again
    applied = [a.engine.status()["applied"]["version"] for a in agents[:2]]
    count = AuditEntry.objects.count()
    again = services.device_deployment_batch(device_deployment_ids=list(ids.values()), threads=3)
    assert again == results
    assert [a.engine.status()["applied"]["version"] for a in agents[:2]] == applied
    assert AuditEntry.objects.count() == count
