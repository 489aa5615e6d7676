"""Reads of the fleet: deployment targets and progress, enrolled agents, enrollment tokens,
and rule usage from the stored counters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import (
    Count,
    Exists,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.choices import TERMINAL_STATES
from agents.models import Deployment, EnrollmentToken, RuleCounter
from rules.models import Device, DeviceGroup, Rule, RuleSet


def resolve_target(
    *,
    devices: Sequence[int] | None = None,
    device_group: int | None = None,
    ruleset: int | None = None,
) -> tuple[list[Device], dict]:
    """The devices a deployment request names, and a description of what was asked."""
    given = [
        k
        for k, v in (("devices", devices), ("device_group", device_group), ("ruleset", ruleset))
        if v
    ]
    if len(given) != 1:
        raise ValidationError(
            {"non_field_errors": ["give exactly one of devices, device_group, ruleset"]}
        )
    if devices:
        ids = sorted({int(i) for i in devices})
        found = list(Device.objects.filter(pk__in=ids).order_by("name"))
        missing = sorted(set(ids) - {d.pk for d in found})
        if missing:
            raise ValidationError({"devices": [f"unknown device ids: {missing}"]})
        return found, {
            "kind": "devices",
            "ids": ids,
            "label": ", ".join(d.name for d in found[:5])
            + (f" (+{len(found) - 5})" if len(found) > 5 else ""),
        }
    if device_group:
        group = DeviceGroup.objects.filter(pk=device_group).first()
        if group is None:
            raise ValidationError({"device_group": [f"unknown device group {device_group}"]})
        found = list(Device.objects.filter(group_links__group=group).order_by("name"))
        return found, {"kind": "device_group", "ids": [group.pk], "label": f"group {group.name}"}
    rs = RuleSet.objects.filter(pk=ruleset).first()
    if rs is None:
        raise ValidationError({"ruleset": [f"unknown rule set {ruleset}"]})
    found = list(
        Device.objects.filter(
            Q(ruleset_links__ruleset=rs) | Q(group_links__group__ruleset_links__ruleset=rs)
        )
        .distinct()
        .order_by("name")
    )
    return found, {"kind": "ruleset", "ids": [rs.pk], "label": f"rule set {rs.name}"}


def deployment_summary(deployment: Deployment) -> dict:
    """Counts of device states per wave, for the API and the dashboard."""
    per_wave: dict[int, dict[str, int]] = {}
    for wave, state in deployment.device_deployments.values_list("wave", "state"):
        counts = per_wave.setdefault(wave, {})
        counts[state] = counts.get(state, 0) + 1
    waves = []
    for w in deployment.waves:
        counts = per_wave.get(w["index"], {})
        waves.append(
            {
                **w,
                "states": counts,
                "done": sum(n for s, n in counts.items() if s in TERMINAL_STATES),
            }
        )
    return {"waves": waves}


def deployment_state_counts(deployment: Deployment) -> dict[str, int]:
    """How many of its device deployments are in each state.

    Counted over `device_deployments.all()`, so a prefetched list costs no query.
    """
    counts: dict[str, int] = {}
    for dd in deployment.device_deployments.all():
        counts[dd.state] = counts.get(dd.state, 0) + 1
    return counts


def enrolled_device_ids() -> list[int]:
    """Devices whose agent has enrolled (key and certificate pin known): the ones polled."""
    return list(
        Device.objects.exclude(agent_public_key="")
        .exclude(agent_cert_fingerprint="")
        .values_list("pk", flat=True)
    )


def enrollment_token_lookup(token: str) -> EnrollmentToken | None:
    """The usable (unused, unexpired) token record for a clear-text token, or None."""
    if (
        not isinstance(token, str)
        or not token.startswith(EnrollmentToken.PREFIX)
        or len(token) > 100
    ):
        return None
    return (
        EnrollmentToken.objects.select_related("device")
        .filter(
            digest=EnrollmentToken.digest_of(token),
            used_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .first()
    )


def unused_rules_query(*, since: datetime, ruleset: RuleSet | None = None) -> QuerySet[Rule]:
    """Enabled rules (of `ruleset`, or of all) without a single hit since `since`, on any
    device, annotated with their counters across devices (one query; pages with it).

    `counted_since` says how long the console has been counting a rule (None: no agent
    ever reported it — not deployed anywhere yet), so a rule added yesterday is not mistaken
    for one idle for months.
    """
    per_rule = RuleCounter.objects.filter(rule_uuid=OuterRef("uuid")).values("rule_uuid")
    rules = Rule.objects.filter(enabled=True)
    if ruleset is not None:
        rules = rules.filter(ruleset=ruleset)
    return (
        rules.annotate(
            hit_at=Subquery(per_rule.annotate(v=Max("last_hit_at")).values("v")),
            counted_since=Subquery(per_rule.annotate(v=Min("first_seen_at")).values("v")),
            packets_total=Coalesce(
                Subquery(per_rule.annotate(v=Sum("packets")).values("v")), Value(0)
            ),
        )
        .filter(Q(hit_at__isnull=True) | Q(hit_at__lt=since))
        .select_related("ruleset")
        .order_by("ruleset__name", "position", "id")
    )


def unused_rule_row(rule: Rule) -> dict:
    """One row of the unused-rules report, from `unused_rules_query`."""
    return {
        "rule": str(rule.uuid),
        "ruleset": rule.ruleset.name,
        "position": rule.position,
        "comment": rule.comment,
        "last_hit_at": rule.hit_at,
        "counted_since": rule.counted_since,
        "packets_total": rule.packets_total,
    }


def unused_rules(*, since: datetime, ruleset: RuleSet | None = None) -> list[dict]:
    """`unused_rules_query` as report rows (all of them: for pages that show them all)."""
    return [unused_rule_row(r) for r in unused_rules_query(since=since, ruleset=ruleset)]


def rule_hits(rule_uuids: Iterable) -> dict[str, dict]:
    """Hit totals per rule uuid, summed over every device that counts it (one query):
    packets, bytes, last_hit_at (the latest on any device), devices (how many count it)."""
    rows = (
        RuleCounter.objects.filter(rule_uuid__in=list(rule_uuids))
        .order_by()
        .values("rule_uuid")
        .annotate(
            packets=Sum("packets"),
            bytes=Sum("bytes"),
            last_hit_at=Max("last_hit_at"),
            devices=Count("device", distinct=True),
        )
    )
    return {str(row.pop("rule_uuid")): row for row in rows}


def rule_hit_since(since: datetime | None = None) -> Exists:
    """For filtering rules: true where some device counted a hit of the rule since `since`
    (None: ever)."""
    hits = RuleCounter.objects.filter(rule_uuid=OuterRef("uuid"), last_hit_at__isnull=False)
    if since is not None:
        hits = hits.filter(last_hit_at__gte=since)
    return Exists(hits)


def ruleset_lookup(ref: str) -> RuleSet | None:
    """A rule set by id, or by name."""
    if ref.isdecimal():
        found = RuleSet.objects.filter(pk=int(ref)).first()
        if found is not None:
            return found
    return RuleSet.objects.filter(name=ref).first()
