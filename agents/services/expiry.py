"""The scheduled redeploy at a rule's expiry: it tidies what the kernel already enforces.

An expiring rule carries the kernel time match (`-m time --datestop`), so it stops
matching on time with nobody acting; but it stays in the bundle, and in the counters and
the drift check, until the device is compiled again. Every minute (beat:
agents.tasks.expire_rules) this finds the devices whose last compile came before an
expiry of a rule of their rule sets, and redeploys them in one deployment with trigger
`expiry`, audited as `system:expiry`. Idempotent: a device with a deployment still under
way, or compiled after the expiry, is left alone, so each expiry makes one deployment.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from agents.choices import TERMINAL_STATES, DeploymentTrigger
from agents.models import Deployment, DeviceDeployment
from agents.services.deployments import deploy_create
from core.audit.choices import AuditChannel
from core.audit.context import audit_context
from rules.models import Device, DeviceMembership, DeviceRuleSet, Rule

ACTOR = "system:expiry"
_LISTED = 20  # expired rules named in the audit entry (the count is always complete)


def expire_rules(*, now: datetime | None = None) -> Deployment | None:
    """Redeploy the devices an expiry has made out of date; the deployment, or None."""
    now = now or timezone.now()
    latest = _latest_expiry_per_ruleset(now)
    if not latest:
        return None
    expiry_of = _latest_expiry_per_device(latest)
    with transaction.atomic():
        # locked, then decided: a second run at the same time waits, then finds them busy
        locked = list(
            Device.objects.select_for_update()
            .filter(pk__in=_due(expiry_of))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        due = _due({pk: expiry_of[pk] for pk in locked})
        if not due:
            return None
        expired = _expired_rules(due, now)
        reason = f"{len(expired)} rule(s) expired since the last deploy"
        with audit_context(
            actor=ACTOR,
            channel=AuditChannel.SYSTEM,
            reason=reason,
            expired_rules=expired[:_LISTED],
        ):
            return deploy_create(devices=due, trigger=DeploymentTrigger.EXPIRY, reason=reason)


def _latest_expiry_per_ruleset(now: datetime) -> dict[int, datetime]:
    """Rule set id -> the latest expiry of its enabled rules that has passed by `now`."""
    rows = (
        Rule.objects.filter(enabled=True, expires_at__lte=now)
        .values("ruleset_id")
        .annotate(latest=Max("expires_at"))
        .values_list("ruleset_id", "latest")
    )
    return dict(rows)


def _latest_expiry_per_device(latest: dict[int, datetime]) -> dict[int, datetime]:
    """Device id -> the latest passed expiry among its rule sets (its own and its groups')."""
    links = list(
        DeviceRuleSet.objects.filter(ruleset_id__in=latest).values_list("device_id", "ruleset_id")
    )
    links += DeviceMembership.objects.filter(
        group__ruleset_links__ruleset_id__in=latest
    ).values_list("device_id", "group__ruleset_links__ruleset_id")
    out: dict[int, datetime] = {}
    for device_id, ruleset_id in links:
        expiry = latest[ruleset_id]
        if device_id not in out or expiry > out[device_id]:
            out[device_id] = expiry
    return out


def _due(expiry_of: dict[int, datetime]) -> list[int]:
    """The devices last compiled before their latest expiry, with no deployment under way.

    A device deployment compiles as of its `started_at`; a device never compiled for holds
    nothing of ours, and one with a deployment queued or in flight gets a fresh compile.
    """
    if not expiry_of:
        return []
    ids = list(expiry_of)
    busy = set(
        DeviceDeployment.objects.filter(device_id__in=ids)
        .exclude(state__in=TERMINAL_STATES)
        .values_list("device_id", flat=True)
    )
    last = dict(
        DeviceDeployment.objects.filter(device_id__in=ids, started_at__isnull=False)
        .values("device_id")
        .annotate(last=Max("started_at"))
        .values_list("device_id", "last")
    )
    return sorted(pk for pk in ids if pk not in busy and pk in last and last[pk] < expiry_of[pk])


def _expired_rules(due: list[int], now: datetime) -> list[dict]:
    """The rules whose expiry the deployment tidies (for the audit entry), soonest first."""
    since = min(
        DeviceDeployment.objects.filter(device_id__in=due, started_at__isnull=False)
        .values("device_id")
        .annotate(last=Max("started_at"))
        .values_list("last", flat=True)
    )
    rulesets = set(
        DeviceRuleSet.objects.filter(device_id__in=due).values_list("ruleset_id", flat=True)
    ) | set(
        DeviceMembership.objects.filter(device_id__in=due).values_list(
            "group__ruleset_links__ruleset_id", flat=True
        )
    )
    rules = (
        Rule.objects.filter(
            ruleset_id__in=rulesets, enabled=True, expires_at__gt=since, expires_at__lte=now
        )
        .select_related("ruleset")
        .order_by("expires_at", "pk")
    )
    return [
        {
            "ruleset": rule.ruleset.name,
            "position": rule.position,
            "rule": str(rule.uuid),
            "expires_at": rule.expires_at.isoformat(),
        }
        for rule in rules
    ]
