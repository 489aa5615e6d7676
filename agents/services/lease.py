"""The device's push lease: at most one push per device is on the wire.

The lease is a conditional UPDATE on the Device row, so it works on SQLite and PostgreSQL.
A lease held by a process that died on this host is taken over at once (kill -9, OOM);
one held elsewhere expires with the task time limit.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from django.conf import settings
from django.db.models import Case, F, Q, Subquery, Value, When
from django.utils import timezone

from agents.models import DeviceDeployment
from rules.models import Device


def _lease_owner(dd: DeviceDeployment) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{dd.pk}"


def _owner_dead(owner: str) -> bool:
    """True when `owner` was a process on this host that no longer exists (kill -9)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdecimal():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lease_acquire(dd: DeviceDeployment, *, device: int | Subquery | None = None) -> bool:
    """Take the device's push lease for this device deployment; False if someone holds it.

    One conditional UPDATE when the lease is free; only a lease held by someone else is
    read, to take it over if its process died on this host. `device`: the device's id, or
    a subquery giving it (the caller has not read it), instead of `dd.device_id`."""
    device = dd.device_id if device is None else device
    now = timezone.now()
    seconds = settings.RAMPART.get("PUSH_LEASE_SECONDS", settings.CELERY_TASK_TIME_LIMIT + 60)
    owner = _lease_owner(dd)
    free = (
        Q(push_lease_owner__isnull=True) | Q(push_lease_until__lt=now) | Q(push_lease_owner=owner)
    )
    take = {"push_lease_owner": owner, "push_lease_until": now + timedelta(seconds=seconds)}
    if Device.objects.filter(free, pk=device).update(**take):
        return True
    current = Device.objects.filter(pk=device).values_list("push_lease_owner", flat=True).first()
    if not current or current == owner or not _owner_dead(current):
        return False
    return bool(Device.objects.filter(pk=device, push_lease_owner=current).update(**take))


def lease_release_query(dd: DeviceDeployment) -> dict:
    """The UPDATE values that give the lease back if this process holds it for `dd`, to
    join another update of the device row (one statement)."""
    ours = Q(push_lease_owner=_lease_owner(dd))
    return {
        name: Case(
            When(ours, then=Value(None)),
            default=F(name),
            output_field=Device._meta.get_field(name),
        )
        for name in ("push_lease_owner", "push_lease_until")
    }


def lease_release(dd: DeviceDeployment) -> None:
    """Give the lease back (only if this process still holds it for `dd`)."""
    Device.objects.filter(pk=dd.device_id, push_lease_owner=_lease_owner(dd)).update(
        push_lease_owner=None, push_lease_until=None
    )


def lease_drop(dd: DeviceDeployment) -> None:
    """Free a lease held for `dd` by any process (its worker was lost: the sweeper)."""
    Device.objects.filter(pk=dd.device_id, push_lease_owner__endswith=f":{dd.pk}").update(
        push_lease_owner=None, push_lease_until=None
    )
