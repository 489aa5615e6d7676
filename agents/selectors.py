"""Reads of the deploy machinery: rule usage from the stored counters."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db.models import Max, Min, Sum

from agents.models import RuleCounter
from rules.models import Device


def unused_rules(*, since: datetime) -> list[dict]:
    """Enabled rules without a single hit since `since`, on any device.

    `counted_since` says how long the console has been counting a rule (None: no agent
    ever reported it — not deployed anywhere yet), so a rule added yesterday is not mistaken
    for one idle for months.
    """
    from rules.models import Rule

    stats = {
        str(row["rule_uuid"]): row
        for row in RuleCounter.objects.values("rule_uuid").annotate(
            last_hit_at=Max("last_hit_at"),
            counted_since=Min("first_seen_at"),
            packets=Sum("packets"),
        )
    }
    out = []
    rules = (
        Rule.objects.filter(enabled=True)
        .select_related("ruleset")
        .order_by("ruleset__name", "position", "id")
    )
    for rule in rules:
        row = stats.get(str(rule.uuid))
        last_hit = row["last_hit_at"] if row else None
        if last_hit is not None and last_hit >= since:
            continue
        out.append(
            {
                "rule": str(rule.uuid),
                "ruleset": rule.ruleset.name,
                "position": rule.position,
                "comment": rule.comment,
                "last_hit_at": last_hit,
                "counted_since": row["counted_since"] if row else None,
                "packets_total": row["packets"] if row else 0,
            }
        )
    return out


def device_compile_options(device: Device | None = None):
    """The compiler options for a device: the site-wide ipset threshold plus its own flags."""
    from compiler import CompileOptions

    return CompileOptions(
        ipset_threshold=settings.RAMPART["IPSET_THRESHOLD"],
        forward_fallthrough=bool(device and device.forward_fallthrough),
    )
