"""Devices as the device pages show them: lists, status counts, counters, recent pushes."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from agents.models import RuleCounter
from agents.selectors import unused_rules
from rules.choices import AgentStatus
from rules.models import Device, DeviceGroup, Rule


def device_list() -> QuerySet[Device]:
    return Device.objects.prefetch_related("group_links__group", "ruleset_links__ruleset").order_by(
        "name"
    )


def device_search(*, status: str = "", q: str = "") -> QuerySet[Device]:
    """The device list narrowed by status ("drifted" or an agent status) and name/address."""
    devices = device_list()
    if status == "drifted":
        devices = devices.filter(drifted=True)
    elif status:
        devices = devices.filter(status=status)
    if q:
        devices = devices.filter(name__icontains=q) | devices.filter(address__contains=q)
    return devices


def device_problems(limit: int = 10) -> QuerySet[Device]:
    """Devices that are not online or have drifted (the overview's attention list)."""
    return device_list().exclude(status=AgentStatus.ONLINE, drifted=False)[:limit]


def device_counts() -> dict[str, int]:
    qs = Device.objects.all()
    return {
        "total": qs.count(),
        "online": qs.filter(status=AgentStatus.ONLINE).count(),
        "offline": qs.filter(status=AgentStatus.OFFLINE).count(),
        "unknown": qs.filter(status=AgentStatus.UNKNOWN).count(),
        "drifted": qs.filter(drifted=True).count(),
    }


def device_choices() -> list[tuple[int, str]]:
    """(pk, name) of every device, for pickers."""
    return list(Device.objects.order_by("name").values_list("pk", "name"))


def device_group_choices() -> list[tuple[int, str]]:
    """(pk, name) of every device group, for pickers."""
    return list(DeviceGroup.objects.values_list("pk", "name"))


def device_counters(device: Device, limit: int = 200) -> list[dict]:
    """The device's per-rule counters joined to the rules they count (busiest first)."""
    counters = list(RuleCounter.objects.filter(device=device).order_by("-packets")[:limit])
    rules = {
        str(r.uuid): r
        for r in Rule.objects.select_related("ruleset").filter(
            uuid__in=[c.rule_uuid for c in counters]
        )
    }
    return [{"counter": c, "rule": rules.get(str(c.rule_uuid))} for c in counters]


def device_deployments(device: Device, limit: int = 10) -> QuerySet:
    return device.deployments.select_related("deployment").order_by("-id")[:limit]


def rules_without_hits(days: int, limit: int = 20) -> tuple[int, list[dict]]:
    """Rules deployed somewhere whose counters stayed at zero for `days` (count, first rows)."""
    rows = unused_rules(since=timezone.now() - timedelta(days=days))
    counted = [r for r in rows if r["counted_since"] is not None]  # deployed somewhere and idle
    return len(counted), counted[:limit]
