"""Rule sets and their rules as the editor shows them: filtered pages and rows by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from agents.selectors import rule_hit_since, rule_hits
from rules.choices import Side
from rules.models import (
    AddressGroupMember,
    Device,
    NatRule,
    RevisionStatus,
    Rule,
    RuleAddress,
    RuleService,
    RuleSet,
    ServiceGroupMember,
)
from rules.selectors import rules_queryset

EXPIRY_WINDOW = timedelta(days=7)
IDLE_DAYS = 30  # the editor's "no hits in 30 days" filter
HIT_FILTERS = (("idle", f"no hits in {IDLE_DAYS} days"), ("never", "never hit"))


@dataclass
class RuleFilter:
    """The editor's filter bar; empty fields do not filter."""

    q: str = ""
    chain: str = ""
    action: str = ""
    enabled: str = ""  # "", "yes", "no"
    hits: str = ""  # "", "idle" (no hits in IDLE_DAYS on any device), "never"

    @property
    def active(self) -> bool:
        return bool(self.q or self.chain or self.action or self.enabled or self.hits)


def _search(qs: QuerySet[Rule], text: str) -> QuerySet[Rule]:
    """Rules whose comment, interfaces or references (one group level down) contain `text`."""
    addr_member = AddressGroupMember.objects.filter(group=OuterRef("group")).filter(
        Q(literal__icontains=text)
        | Q(address__name__icontains=text)
        | Q(address__value__icontains=text)
        | Q(subgroup__name__icontains=text)
    )
    addr = RuleAddress.objects.filter(rule=OuterRef("pk")).filter(
        Q(literal__icontains=text)
        | Q(address__name__icontains=text)
        | Q(address__value__icontains=text)
        | Q(group__name__icontains=text)
        | Q(Exists(addr_member))
    )
    svc_member = ServiceGroupMember.objects.filter(group=OuterRef("group")).filter(
        Q(service__name__icontains=text) | Q(subgroup__name__icontains=text)
    )
    svc = RuleService.objects.filter(rule=OuterRef("pk")).filter(
        Q(service__name__icontains=text) | Q(group__name__icontains=text) | Q(Exists(svc_member))
    )
    cond = (
        Q(comment__icontains=text)
        | Q(Exists(addr))
        | Q(Exists(svc))
        | Q(in_interface__icontains=text)
        | Q(out_interface__icontains=text)
    )
    if len(text) >= 4 and all(c in "0123456789abcdef-" for c in text.lower()):
        cond |= Q(uuid__istartswith=text)
    return qs.filter(cond)


def ruleset_rules(ruleset: RuleSet, flt: RuleFilter | None = None) -> QuerySet[Rule]:
    """The rule set's rules in order, narrowed by `flt`, references prefetched.

    Search uses EXISTS subqueries rather than joins so a 10,000-rule set needs no DISTINCT
    and the paginator's COUNT stays cheap.
    """
    qs = rules_queryset().filter(ruleset=ruleset)
    flt = flt or RuleFilter()
    if flt.chain:
        qs = qs.filter(chain=flt.chain)
    if flt.action:
        qs = qs.filter(action=flt.action)
    if flt.enabled in ("yes", "no"):
        qs = qs.filter(enabled=flt.enabled == "yes")
    if flt.hits == "idle":
        qs = qs.exclude(rule_hit_since(timezone.now() - timedelta(days=IDLE_DAYS)))
    elif flt.hits == "never":
        qs = qs.exclude(rule_hit_since())
    text = flt.q.strip()
    if text.startswith("#") and text[1:].isdecimal():
        return qs.filter(position=int(text[1:]))  # "#42": jump to a position
    if text:
        # Direct references, plus members one group level down ("which rules allow https?").
        qs = _search(qs, text)
    return qs


@dataclass
class RuleRow:
    """One rule as the table shows it: references split by side, its analysis findings.

    The cells' HTML is built by `dashboard.templatetags.rule_cells` from these fields.
    """

    rule: Rule
    sources: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    now: datetime | None = None
    hits: dict | None = None  # summed over devices (agents.selectors.rule_hits); None: none

    @property
    def expired(self) -> bool:
        return bool(self.rule.expires_at and self.rule.expires_at <= (self.now or timezone.now()))

    @property
    def match(self) -> str:
        """Protocol and ports when given literally (services are shown separately)."""
        r = self.rule
        parts = [r.protocol] if r.protocol else []
        if r.dports:
            parts.append("dport " + ",".join(r.dports))
        if r.sports:
            parts.append("sport " + ",".join(r.sports))
        if r.icmp_type:
            parts.append(r.icmp_type)
        return " ".join(parts)

    def refs(self) -> dict[str, list[str]]:
        """The references by side, as the rule form shows them."""
        return {
            "sources": self.sources,
            "destinations": self.destinations,
            "services": self.services,
        }


def rule_rows(rules) -> list[RuleRow]:
    """Rows of the rule table for already-prefetched rules (no query per rule)."""
    now = timezone.now()
    rows = []
    for rule in rules:
        row = RuleRow(rule, now=now)
        for link in rule.addresses.all():
            (row.sources if link.side == Side.SOURCE else row.destinations).append(link.ref)
        row.services = [link.ref for link in rule.service_refs.all()]
        rows.append(row)
    return rows


def attach_hits(rows: list[RuleRow]) -> None:
    """Give each row its rule's hit totals and last hit across devices (one query)."""
    hits = rule_hits(row.rule.uuid for row in rows)
    for row in rows:
        row.hits = hits.get(str(row.rule.uuid))


def ruleset_nat_rules(ruleset: RuleSet) -> QuerySet[NatRule]:
    """The rule set's NAT rules in their own order (listed beside the filter rules)."""
    return ruleset.nat_rules.order_by("position", "id")


def rule_refs(rule: Rule) -> dict[str, list[str]]:
    """One rule's references by side (what the edit form starts from)."""
    return rule_rows([rule])[0].refs()


def ruleset_list() -> QuerySet[RuleSet]:
    return RuleSet.objects.annotate(
        rule_count=Count("rules", distinct=True),
        enabled_count=Count("rules", filter=Q(rules__enabled=True), distinct=True),
        device_count=Count("device_links", distinct=True),
        group_count=Count("device_group_links", distinct=True),
    ).order_by("name")


def ruleset_choices() -> QuerySet:
    """(pk, name) of every rule set, for pickers."""
    return RuleSet.objects.order_by("name").values_list("pk", "name")


def ruleset_pk_by_name(name: str) -> int | None:
    return RuleSet.objects.filter(name=name).values_list("pk", flat=True).first()


def ruleset_pending_count(ruleset: RuleSet) -> int:
    """Pending changes of the rule set waiting for an approver."""
    return ruleset.revisions.filter(status=RevisionStatus.PENDING).count()


def rules_expiring(within: timedelta = EXPIRY_WINDOW, limit: int = 20) -> QuerySet[Rule]:
    """Enabled rules whose expiry falls in the next `within` (soonest first)."""
    now = timezone.now()
    return (
        Rule.objects.select_related("ruleset")
        .filter(enabled=True, expires_at__gt=now, expires_at__lte=now + within)
        .order_by("expires_at")[:limit]
    )


def ruleset_devices(ruleset: RuleSet) -> list[Device]:
    """Devices whose policy includes the rule set (directly or through a group)."""
    return list(
        Device.objects.filter(
            Q(ruleset_links__ruleset=ruleset)
            | Q(group_links__group__ruleset_links__ruleset=ruleset)
        )
        .distinct()
        .order_by("name")
    )
