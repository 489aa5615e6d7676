"""Watching the fleet: an agent's status (online/offline), drift and its repair, counters."""

from __future__ import annotations

import ipaddress
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from agents.choices import TERMINAL_STATES, DeploymentTrigger
from agents.client import AgentClient, AgentError
from agents.models import Deployment, DeviceDeployment, DevicePoll
from agents.services.counters import counters_ingest
from agents.services.deployments import deploy_create
from agents.services.poll_writes import PollWrites
from core.audit.choices import AuditAction
from core.audit.services import record
from rules.choices import AgentStatus
from rules.models import Device

log = logging.getLogger("rampart.deploy")


def status_poll(*, device_id: int) -> dict:
    """Ask one agent how it is, now: a full status (never the conditional "unchanged", so the
    agent reads its kernel); record online/offline, drift and counters; repair drift. The
    scheduled fleet polls (`status_poll_batch`) are the conditional ones.

    Returns a small summary (for logs and tests).
    """
    return device_poll(Device.objects.get(pk=device_id))


def status_poll_batch(*, device_ids: list[int]) -> list[dict]:
    """Poll several devices: one query for the devices and one for their generations, then
    per device only sign + call + note; the device and poll rows of the whole batch are
    written together at its end (poll_writes.py)."""
    generations = dict(
        DevicePoll.objects.filter(device_id__in=device_ids).values_list("device_id", "generation")
    )
    writes = PollWrites(generations)
    out = []
    try:
        for device in Device.objects.filter(pk__in=device_ids):
            try:
                out.append(device_poll(device, generations.get(device.pk), writes))
            except Exception:  # one device's failure must not cost the rest of the batch
                log.exception("status poll of %s failed", device.name)
                out.append({"device": device.name, "status": "error"})
    finally:
        writes.flush(timezone.now())
    return out


def device_poll(device: Device, since: int | None = None, writes: PollWrites | None = None) -> dict:
    """One poll of a loaded device; `since`: the generation its agent last answered;
    `writes`: the batch's pending writes (written here, at the end, when None)."""
    if writes is None:
        writes = PollWrites()
        try:
            return device_poll(device, since, writes)
        finally:
            writes.flush(timezone.now())
    now = timezone.now()
    try:
        status = AgentClient.for_device(device, timeout=(3.05, 15)).status(since)
    except AgentError as exc:
        _mark_offline(device, exc)
        return {"device": device.name, "status": AgentStatus.OFFLINE, "error": str(exc)}
    if status.get("unchanged"):
        return _unchanged(device, status, now, writes)
    generation = status.get("generation")
    if generation != since:
        writes.generation(device.pk, generation if isinstance(generation, int) else None)
    updates = _status_updates(status, now)
    drifted = updates.get("drifted", device.drifted)
    diff = updates.get("drift_diff", device.drift_diff)
    if device.status != AgentStatus.ONLINE:
        record(
            AuditAction.UPDATE,
            device,
            before={"status": device.status},
            after={"status": AgentStatus.ONLINE},
        )
    if drifted and (not device.drifted or diff != device.drift_diff):
        record(AuditAction.DRIFT_DETECTED, device, after={"drifted": True, "diff": diff[:20_000]})
    elif device.drifted and not drifted:
        record(AuditAction.UPDATE, device, before={"drifted": True}, after={"drifted": False})
    previous_boot = (device.facts or {}).get("boot_id")
    writes.device(device.pk, updates)
    counters = status.get("counters")
    ingested = 0
    if isinstance(counters, dict):
        reset = bool(
            previous_boot and status.get("boot_id") and previous_boot != status.get("boot_id")
        )
        ingested = counters_ingest(
            device=device,
            counters=counters,
            at=now,
            reset=reset,
            epoch=status.get("counter_epoch"),
        )
    repair = _repair(device, writes, now) if drifted and device.auto_repair else None
    return {
        "device": device.name,
        "status": AgentStatus.ONLINE,
        "drifted": drifted,
        "counters": ingested,
        "repair": repair.pk if repair else None,
    }


def _repair(device: Device, writes: PollWrites, now: datetime) -> Deployment | None:
    """A drift repair, after the writes noted so far (the device row says what it found)."""
    writes.flush(now)
    return drift_repair(device=device)


def _unchanged(device: Device, status: dict, now: datetime, writes: PollWrites) -> dict:
    """The agent's "nothing changed since your generation": the device is online, seen now;
    a drift it still has is still repaired (after the cooldown)."""
    updates: dict[str, Any] = {"status": AgentStatus.ONLINE, "last_seen_at": now}
    peer = _peer(status.get("peer"))
    if peer and peer != device.console_seen_from:
        updates["console_seen_from"] = peer
    if device.status != AgentStatus.ONLINE:
        record(
            AuditAction.UPDATE,
            device,
            before={"status": device.status},
            after={"status": AgentStatus.ONLINE},
        )
    writes.device(device.pk, updates)
    repair = _repair(device, writes, now) if device.drifted and device.auto_repair else None
    return {
        "device": device.name,
        "status": AgentStatus.ONLINE,
        "unchanged": True,
        "drifted": device.drifted,
        "repair": repair.pk if repair else None,
    }


def _mark_offline(device: Device, exc: AgentError) -> None:
    if device.status != AgentStatus.OFFLINE:
        Device.objects.filter(pk=device.pk).update(status=AgentStatus.OFFLINE)
        record(
            AuditAction.UPDATE,
            device,
            before={"status": device.status},
            after={"status": AgentStatus.OFFLINE},
            extra={"error": str(exc)[:500]},
        )


def _peer(value: object) -> str | None:
    """The console's address as the agent saw it (an IPv4-mapped one as IPv4), or None."""
    try:
        addr = ipaddress.ip_address(str(value)) if value else None
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return str(addr) if addr else None


def _status_updates(status: dict, now: datetime) -> dict[str, Any]:
    """The Device fields an agent's status answer sets (drift diff capped at 200 kB)."""
    updates: dict[str, Any] = {"status": AgentStatus.ONLINE, "last_seen_at": now}
    facts = status.get("facts")
    if isinstance(facts, dict):
        updates["facts"] = {
            **facts,
            "agent_version": status.get("agent_version"),
            "backend": status.get("backend"),
            "boot_id": status.get("boot_id"),
        }
    peer = _peer(status.get("peer"))
    if peer:
        updates["console_seen_from"] = peer
    applied = status.get("applied") or {}
    if applied.get("confirmed") and applied.get("hash"):
        updates["applied_hash"] = applied["hash"]
        updates["applied_version"] = int(applied.get("version") or 0)
    drift = status.get("drift", {})
    if drift is None:  # an apply under way waits (e.g. for the xtables lock): drift unknown
        return updates
    drift = drift or {}
    drifted = bool(drift.get("drifted"))
    diff = str(drift.get("diff") or "")[:200_000]
    updates["drifted"] = drifted
    updates["drift_diff"] = diff if drifted else ""
    return updates


def drift_repair(*, device: Device) -> Deployment | None:
    """Re-deploy a drifted device (itself a deployment, audited).

    None while a push to it is under way, or within the cooldown after the last repair:
    a repair that did not cure the drift must not turn into a deployment every poll.
    """
    busy = (
        DeviceDeployment.objects.filter(device=device).exclude(state__in=TERMINAL_STATES).exists()
    )
    cooldown = timezone.now() - timedelta(
        seconds=settings.RAMPART.get("REPAIR_COOLDOWN_SECONDS", 300)
    )
    recent = DeviceDeployment.objects.filter(
        device=device, deployment__trigger=DeploymentTrigger.REPAIR, created_at__gte=cooldown
    ).exists()
    if busy or recent:
        return None
    deployment = deploy_create(
        devices=[device.pk],
        trigger=DeploymentTrigger.REPAIR,
        reason="automatic repair of drift found by the status poll",
    )
    record(AuditAction.DRIFT_REPAIRED, device, extra={"deployment": deployment.pk})
    return deployment
