"""Status polls spread over the interval, batched, and at a bounded rate (poll_schedule.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents import enqueue
from agents.models import DevicePoll
from agents.services import poll_schedule
from rules.models import Device

pytestmark = pytest.mark.django_db


@pytest.fixture
def knobs(settings):
    settings.RAMPART = {
        **settings.RAMPART,
        "STATUS_POLL_SECONDS": 60,
        "POLL_MAX_PER_SECOND": 10,
        "POLL_TICK_SECONDS": 10,
        "POLL_BATCH": 4,
    }


def enrolled(count: int, start: int = 0) -> list[Device]:
    return Device.objects.bulk_create(
        [
            Device(
                name=f"d{i}",
                address="127.0.0.1",
                agent_public_key="k",
                agent_cert_fingerprint="f",
            )
            for i in range(start, start + count)
        ]
    )


def test_interval_grows_with_the_fleet(knobs):
    assert poll_schedule.poll_interval(0) == 60
    assert poll_schedule.poll_interval(600) == 60  # 600 / 10 per s = 60 s: the minimum
    assert poll_schedule.poll_interval(10_000) == 1000
    assert poll_schedule.poll_interval(20_000) > poll_schedule.poll_interval(10_000)


def test_first_poll_times_spread_within_the_interval():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    times = poll_schedule.first_poll_times(1000, now, 200.0)
    offsets = [(t - now).total_seconds() for t in times]
    assert all(0 <= o < 200 for o in offsets)
    # spread, not bunched: every fifth of the interval holds some of them
    assert {int(o // 40) for o in offsets} == {0, 1, 2, 3, 4}


def test_tick_places_claims_and_batches_at_the_rate_cap(knobs, monkeypatch):
    sent: list[list[int]] = []
    monkeypatch.setattr(enqueue, "poll_batches", lambda batches: sent.extend(batches))
    devices = enrolled(150)
    Device.objects.create(name="not-enrolled", address="127.0.0.1")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    first = poll_schedule.fleet_poll_tick(now)
    assert first["fleet"] == 150 and first["placed"] == 150 and first["interval"] == 60
    assert DevicePoll.objects.count() == 150
    nexts = DevicePoll.objects.values_list("next_poll_at", flat=True)
    assert all(now <= t < now + timedelta(seconds=60) for t in nexts)

    # a minute later all are due; a tick takes at most 10/s × 10 s = 100, in batches of 4
    sent.clear()
    later = now + timedelta(seconds=61)
    tick = poll_schedule.fleet_poll_tick(later)
    assert tick["due"] == 100 and tick["batches"] == 25
    assert all(len(b) <= 4 for b in sent) and len({i for b in sent for i in b}) == 100
    claimed = set(
        DevicePoll.objects.filter(next_poll_at=later + timedelta(seconds=60)).values_list(
            "device_id", flat=True
        )
    )
    assert len(claimed) == 100
    # the next tick takes the remaining 50, never the claimed ones again
    sent.clear()
    rest = poll_schedule.fleet_poll_tick(later)
    ids = {i for b in sent for i in b}
    assert rest["due"] == 50 and ids.isdisjoint(claimed)
    assert ids <= {d.pk for d in devices}
