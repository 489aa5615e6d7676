"""A poll batch's writes (agents/services/poll_writes.py): each device gets exactly what a
row-by-row UPDATE of its own answer would give it, in a few statements for the batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import services
from agents.models import DevicePoll
from agents.services.poll_writes import PollWrites
from rules.models import Device
from tests.support.deploy import local_agent, make_device

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

T0 = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)
FIELDS = [
    "status",
    "last_seen_at",
    "facts",
    "console_seen_from",
    "applied_hash",
    "applied_version",
    "drifted",
    "drift_diff",
]


def answers(i: int) -> dict:
    """What poll i of a batch sets: full answers (drift, facts, an applied bundle, a
    busy one without drift) and "unchanged" ones, with shared and differing values."""
    seen = T0 + timedelta(milliseconds=17 * i)
    if i % 3 == 0:  # unchanged, some with a new peer
        out = {"status": "online", "last_seen_at": seen}
        return {**out, "console_seen_from": "198.18.0.9"} if i % 2 else out
    full = {
        "status": "online",
        "last_seen_at": seen,
        "facts": {"hostname": f"h{i}", "interfaces": ["lo", f"eth{i}"], "boot_id": None},
        "console_seen_from": f"198.18.1.{i}",
        "drifted": i % 2 == 0,
        "drift_diff": "--- applied\n+++ live\n+x" if i % 2 == 0 else "",
    }
    if i % 3 == 1:
        full |= {"applied_hash": f"{i:064x}", "applied_version": i}
    if i == 5:  # busy: drift unknown, its columns not written
        del full["drifted"], full["drift_diff"]
    return full


def twins(n: int) -> tuple[list[Device], list[Device]]:
    def made(prefix: str) -> list[Device]:
        return [
            make_device(
                f"{prefix}-{i}",
                status="offline",
                applied_hash="f" * 64,
                applied_version=99,
                drifted=True,
                drift_diff="old",
                facts={"old": True},
            )
            for i in range(n)
        ]

    return made("one"), made("bulk")


def row(device: Device) -> tuple:
    device.refresh_from_db()
    return tuple(getattr(device, f) for f in FIELDS)


def test_bulk_write_records_each_device_as_its_own_update_would():
    one, bulk = twins(8)
    for i, device in enumerate(one):
        Device.objects.filter(pk=device.pk).update(**answers(i))
    writes = PollWrites()
    for i, device in enumerate(bulk):
        writes.device(device.pk, answers(i))
    with CaptureQueriesContext(connection) as queries:
        writes.flush(T0)
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    # one UPDATE per set of columns written (unchanged; unchanged + peer; full; full +
    # applied; busy), not one per device
    assert len(updates) == 5
    for a, b in zip(one, bulk, strict=True):
        assert row(a) == row(b)
    assert row(bulk[5])[6:] == (True, "old")  # the busy answer left drift alone


def test_a_column_the_answer_did_not_carry_keeps_a_concurrent_write():
    (device,), _ = twins(1)
    writes = PollWrites()
    writes.device(device.pk, {"status": "online", "last_seen_at": T0})
    Device.objects.filter(pk=device.pk).update(applied_hash="a" * 64, applied_version=7)
    writes.flush(T0)
    device.refresh_from_db()
    assert (device.status, device.applied_hash, device.applied_version) == ("online", "a" * 64, 7)


def test_generations_update_known_rows_and_make_missing_ones_due_now():
    devices = [make_device(f"web-{i}") for i in range(3)]
    DevicePoll.objects.create(device=devices[0], next_poll_at=T0 + timedelta(hours=1))
    writes = PollWrites(known=[devices[0].pk])
    writes.generation(devices[0].pk, 11)
    writes.generation(devices[1].pk, None)  # a busy agent: forgotten
    writes.generation(devices[2].pk, 13)
    # placed by the scheduler while the batch ran: updated, not made twice
    DevicePoll.objects.create(device=devices[2], next_poll_at=T0 + timedelta(hours=2))
    writes.flush(T0)
    got = {
        p.device_id: (p.generation, p.next_poll_at)
        for p in DevicePoll.objects.filter(device__in=devices)
    }
    assert got == {
        devices[0].pk: (11, T0 + timedelta(hours=1)),
        devices[1].pk: (None, T0),
        devices[2].pk: (13, T0 + timedelta(hours=2)),
    }


def test_poll_batch_writes_its_devices_together_and_keeps_conditional_semantics(
    tmp_path, deploy_console, policy
):
    _, group = policy
    with (
        local_agent(tmp_path / "a", deploy_console) as a,
        local_agent(tmp_path / "b", deploy_console) as b,
        local_agent(tmp_path / "c", deploy_console) as c,
    ):
        devices = [make_device(f"web-{i}", agent=x) for i, x in enumerate((a, b, c))]
        ids = [d.pk for d in devices]
        with CaptureQueriesContext(connection) as queries:
            first = services.status_poll_batch(device_ids=ids)
        assert all(r["status"] == "online" and "unchanged" not in r for r in first)
        device_updates = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].startswith(f'UPDATE "{Device._meta.db_table}" ')
        ]
        assert len(device_updates) == 1  # the three devices' rows in one statement
        polls = dict(DevicePoll.objects.filter(device__in=ids).values_list("device", "generation"))
        assert polls == {
            d.pk: x.server.generation.generation for d, x in zip(devices, (a, b, c), strict=True)
        }
        for d in devices:
            d.refresh_from_db()
            assert d.status == "online" and d.facts["backend"] == "recording" and d.last_seen_at
        # the next batch sends the stored generations: "unchanged", the device seen again
        Device.objects.filter(pk__in=ids).update(last_seen_at=None)
        again = services.status_poll_batch(device_ids=ids)
        assert all(r.get("unchanged") for r in again)
        assert not Device.objects.filter(pk__in=ids, last_seen_at=None).exists()
