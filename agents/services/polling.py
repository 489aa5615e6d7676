"""Watching the fleet: an agent's status (online/offline), drift and its repair, counters."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.choices import TERMINAL_STATES, DeploymentTrigger
from agents.client import AgentClient, AgentError
from agents.models import Deployment, DeviceDeployment, RuleCounter
from agents.services.deployments import deploy_create
from core.audit.choices import AuditAction
from core.audit.services import record
from rules.choices import AgentStatus
from rules.models import Device

log = logging.getLogger("rampart.deploy")


def status_poll(*, device_id: int) -> dict:
    """Ask one agent how it is; record online/offline, drift and counters; repair drift.

    Returns a small summary (for logs and tests).
    """
    device = Device.objects.get(pk=device_id)
    now = timezone.now()
    try:
        status = AgentClient.for_device(device, timeout=(3.05, 15)).status()
    except AgentError as exc:
        _mark_offline(device, exc)
        return {"device": device.name, "status": AgentStatus.OFFLINE, "error": str(exc)}
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
    Device.objects.filter(pk=device.pk).update(**updates)
    counters = status.get("counters")
    ingested = 0
    if isinstance(counters, dict):
        reset = bool(
            previous_boot and status.get("boot_id") and previous_boot != status.get("boot_id")
        )
        ingested = counters_ingest(device=device, counters=counters, at=now, reset=reset)
    repair = drift_repair(device=device) if drifted and device.auto_repair else None
    return {
        "device": device.name,
        "status": AgentStatus.ONLINE,
        "drifted": drifted,
        "counters": ingested,
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


def counters_ingest(*, device: Device, counters: dict, at: datetime, reset: bool = False) -> int:
    """Add the agent's raw per-rule counters to the stored totals.

    Totals grow by raw − last_raw; a raw value below the last one (chain rewritten, agent
    or host restarted) or `reset` (the host rebooted) means the kernel counted from zero
    again, so the whole raw value is new traffic. A reset therefore never looks like zero
    traffic, and never subtracts.
    """
    existing = {str(c.rule_uuid): c for c in RuleCounter.objects.filter(device=device)}
    new: list[RuleCounter] = []
    changed: list[RuleCounter] = []
    for key, value in counters.items():
        try:
            rule_uuid = str(uuid.UUID(str(key)))
            packets = int(value.get("packets") or 0)
            nbytes = int(value.get("bytes") or 0)
        except (ValueError, TypeError, AttributeError):
            log.warning("device %s: ignoring malformed counter %r", device.name, key)
            continue
        if packets < 0 or nbytes < 0:
            continue
        counter = existing.get(rule_uuid)
        if counter is None:
            counter = RuleCounter(device=device, rule_uuid=rule_uuid)
            new.append(counter)
        elif counter.last_raw_packets == packets and counter.last_raw_bytes == nbytes and not reset:
            continue
        else:
            changed.append(counter)
        was_reset = reset or packets < counter.last_raw_packets or nbytes < counter.last_raw_bytes
        grew_p = packets if was_reset else packets - counter.last_raw_packets
        grew_b = nbytes if was_reset else nbytes - counter.last_raw_bytes
        counter.packets += grew_p
        counter.bytes += grew_b
        if grew_p > 0:
            counter.last_hit_at = at
        counter.last_raw_packets, counter.last_raw_bytes = packets, nbytes
    with transaction.atomic():
        RuleCounter.objects.bulk_create(new, ignore_conflicts=True)
        if changed:
            RuleCounter.objects.bulk_update(
                changed,
                [
                    "packets",
                    "bytes",
                    "last_hit_at",
                    "last_raw_packets",
                    "last_raw_bytes",
                    "updated_at",
                ],
            )
    return len(new) + len(changed)
