"""When each device is polled: spread over the interval, in batches, at a bounded rate.

Beat runs `poll_fleet` every POLL_TICK_SECONDS. Each tick claims the devices whose
`next_poll_at` has come (at most POLL_MAX_PER_SECOND × tick of them, oldest first), moves
them one interval on in one UPDATE, and sends one `poll_batch` task per POLL_BATCH devices.
A device placed for the first time gets a `next_poll_at` drawn uniformly over the interval,
so a fleet enrolled at once is polled evenly rather than all in the same second, and the
spread is kept from then on (each device moves by exactly one interval).

The interval adapts to the fleet: STATUS_POLL_SECONDS is the minimum, and it grows to
fleet size / POLL_MAX_PER_SECOND so the polls the workers make (and the agents' answers
the database records) never exceed that rate: 10,000 devices at 50 polls/s are polled
every 200 s instead of every 60 s.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from agents import enqueue
from agents.models import DevicePoll
from rules.models import Device


def _knob(name: str, default: float) -> float:
    return float(settings.RAMPART.get(name, default))


def poll_interval(fleet_size: int) -> float:
    """Seconds between two polls of one device for a fleet of `fleet_size`."""
    minimum = _knob("STATUS_POLL_SECONDS", 60)
    rate = _knob("POLL_MAX_PER_SECOND", 50)
    return max(minimum, fleet_size / rate if rate > 0 else minimum)


def first_poll_times(
    count: int, now: datetime, interval: float, rng: Callable[[], float] = random.random
) -> list[datetime]:
    """`count` first poll times spread uniformly over [now, now + interval)."""
    return [now + timedelta(seconds=rng() * interval) for _ in range(count)]


def _enrolled() -> QuerySet[Device]:
    """Devices whose agent has enrolled (key and certificate pin known): the ones polled."""
    return Device.objects.exclude(agent_public_key="").exclude(agent_cert_fingerprint="")


def place_new_devices(now: datetime, interval: float) -> int:
    """Give every enrolled device without a schedule its first poll time."""
    missing = list(_enrolled().filter(poll__isnull=True).values_list("pk", flat=True))
    times = first_poll_times(len(missing), now, interval)
    DevicePoll.objects.bulk_create(
        [DevicePoll(device_id=pk, next_poll_at=at) for pk, at in zip(missing, times, strict=True)],
        ignore_conflicts=True,
    )
    return len(missing)


def claim_due(now: datetime, interval: float, limit: int) -> list[int]:
    """The enrolled devices due for a poll (at most `limit`, oldest first), moved one
    interval on. Run by beat alone, so two ticks never claim the same rows."""
    ids = list(
        DevicePoll.objects.filter(
            next_poll_at__lte=now,
            device__in=_enrolled(),
        )
        .order_by("next_poll_at")
        .values_list("device_id", flat=True)[:limit]
    )
    if ids:
        DevicePoll.objects.filter(device_id__in=ids).update(
            next_poll_at=now + timedelta(seconds=interval)
        )
    return ids


def fleet_poll_tick(now: datetime | None = None) -> dict[str, float]:
    """One beat tick: place new devices, claim the due ones, send them in batches."""
    now = now or timezone.now()
    size = _enrolled().count()
    interval = poll_interval(size)
    placed = place_new_devices(now, interval)
    tick = _knob("POLL_TICK_SECONDS", 10)
    limit = max(1, int(_knob("POLL_MAX_PER_SECOND", 50) * tick))
    ids = claim_due(now, interval, limit)
    batch = max(1, int(_knob("POLL_BATCH", 50)))
    batches = [ids[i : i + batch] for i in range(0, len(ids), batch)]
    enqueue.poll_batches(batches)
    return {
        "fleet": size,
        "interval": interval,
        "placed": placed,
        "due": len(ids),
        "batches": len(batches),
    }
