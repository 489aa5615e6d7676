"""Reads the dashboard needs beyond rules.selectors: page-sized, filter-aware querysets and
the overview numbers. Nothing here writes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from rules.choices import AgentStatus, Side
from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    Device,
    Rule,
    RuleAddress,
    RuleService,
    RuleSet,
    Service,
    ServiceGroup,
    ServiceGroupMember,
)
from rules.selectors import rules_queryset

EXPIRY_WINDOW = timedelta(days=7)


@dataclass
class RuleFilter:
    """The editor's filter bar; empty fields do not filter."""

    q: str = ""
    chain: str = ""
    action: str = ""
    enabled: str = ""  # "", "yes", "no"

    @property
    def active(self) -> bool:
        return bool(self.q or self.chain or self.action or self.enabled)


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
    text = flt.q.strip()
    if text.startswith("#") and text[1:].isdigit():
        return qs.filter(position=int(text[1:]))  # "#42": jump to a position
    if text:
        # Direct references, plus members one group level down ("which rules allow https?").
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
            Q(service__name__icontains=text)
            | Q(group__name__icontains=text)
            | Q(Exists(svc_member))
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
        qs = qs.filter(cond)
    return qs


@dataclass
class RuleRow:
    """One rule as the table shows it: references split by side, cells prebuilt as safe HTML.

    Building the cells here (format_html) instead of with template loops and ifs keeps a
    500-row page several times cheaper to render.
    """

    rule: Rule
    sources: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    now: datetime | None = None

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

    @property
    def css(self) -> str:
        classes = [] if self.rule.enabled else ["rule-disabled"]
        if self.expired:
            classes.append("rule-expired")
        classes += [f"finding-{f['kind']}" for f in self.findings]
        return " ".join(classes)

    @staticmethod
    def _refs(names: list[str], negate: bool, css: str = "ref") -> str:
        neg = mark_safe('<span class="neg" title="not">!</span>') if negate else ""
        if not names:
            return format_html('{}<span class="any">any</span>', neg)
        return format_html(
            "{}{}",
            neg,
            format_html_join("", '<span class="{}">{}</span>', ((css, n) for n in names)),
        )

    def source_cell(self) -> str:
        return self._refs(self.sources, self.rule.sources_negate)

    def destination_cell(self) -> str:
        return self._refs(self.destinations, self.rule.destinations_negate)

    def service_cell(self) -> str:
        refs = format_html_join(
            "", '<span class="ref svc">{}</span>', ((n,) for n in self.services)
        )
        if self.match:
            return format_html(
                '{}<span class="font-monospace small match">{}</span>', refs, self.match
            )
        return refs if self.services else mark_safe('<span class="any">any</span>')

    def iface_cell(self) -> str:
        r = self.rule
        parts = (
            ([f"in {r.in_interface}"] if r.in_interface else [])
            + ([f"out {r.out_interface}"] if r.out_interface else [])
            + ([",".join(r.states)] if r.states else [])
        )
        return " ".join(parts)

    def options_cell(self) -> str:
        r = self.rule
        out = []
        if r.log:
            out.append(mark_safe('<span class="badge text-bg-info">log</span>'))
        if r.rate_limit:
            out.append(
                format_html('<span class="badge text-bg-light border">{}</span>', r.rate_limit)
            )
        if r.expires_at:
            if self.expired:
                out.append(
                    format_html(
                        '<span class="badge text-bg-secondary" title="{}">expired</span>',
                        r.expires_at.isoformat(),
                    )
                )
            else:
                out.append(
                    format_html(
                        '<span class="badge text-bg-warning" title="{}">expires {}</span>',
                        r.expires_at.isoformat(),
                        r.expires_at.strftime("%Y-%m-%d"),
                    )
                )
        return mark_safe(" ".join(out))

    def findings_cell(self) -> str:
        return format_html_join(
            "",
            '<div class="finding finding-{} sev-{}" role="note" data-finding="{}">{} {}</div>',
            (
                (
                    f["kind"],
                    f["severity"],
                    f["kind"],
                    mark_safe("&#9888;" if f["severity"] == "warning" else "&#8505;"),
                    f["message"],
                )
                for f in self.findings
            ),
        )


def rule_rows(rules) -> list[RuleRow]:
    now = timezone.now()
    rows = []
    for rule in rules:
        row = RuleRow(rule, now=now)
        for link in rule.addresses.all():
            (row.sources if link.side == Side.SOURCE else row.destinations).append(link.ref)
        row.services = [link.ref for link in rule.service_refs.all()]
        rows.append(row)
    return rows


def ruleset_list() -> QuerySet[RuleSet]:
    return RuleSet.objects.annotate(
        rule_count=Count("rules", distinct=True),
        enabled_count=Count("rules", filter=Q(rules__enabled=True), distinct=True),
        device_count=Count("device_links", distinct=True),
        group_count=Count("device_group_links", distinct=True),
    ).order_by("name")


def device_list() -> QuerySet[Device]:
    return Device.objects.prefetch_related("group_links__group", "ruleset_links__ruleset").order_by(
        "name"
    )


def device_counts() -> dict[str, int]:
    qs = Device.objects.all()
    return {
        "total": qs.count(),
        "online": qs.filter(status=AgentStatus.ONLINE).count(),
        "offline": qs.filter(status=AgentStatus.OFFLINE).count(),
        "unknown": qs.filter(status=AgentStatus.UNKNOWN).count(),
        "drifted": qs.filter(drifted=True).count(),
    }


def rules_expiring(within: timedelta = EXPIRY_WINDOW, limit: int = 20) -> QuerySet[Rule]:
    """Enabled rules whose expiry falls in the next `within` (soonest first)."""
    now = timezone.now()
    return (
        Rule.objects.select_related("ruleset")
        .filter(enabled=True, expires_at__gt=now, expires_at__lte=now + within)
        .order_by("expires_at")[:limit]
    )


OBJECT_KINDS = {
    "addresses": (AddressObject, "Addresses", "address"),
    "address-groups": (AddressGroup, "Address groups", "address group"),
    "services": (Service, "Services", "service"),
    "service-groups": (ServiceGroup, "Service groups", "service group"),
}


def object_list(kind: str, q: str = "") -> QuerySet:
    """Objects of one kind with a cheap "used by N" count (the full where-used is per object)."""
    model = OBJECT_KINDS[kind][0]
    qs = model.objects.all()
    if kind in ("address-groups", "service-groups"):
        qs = qs.prefetch_related(
            "members__address" if kind == "address-groups" else "members__service",
            "members__subgroup",
        )
    qs = qs.annotate(
        rule_use_count=Count("rule_uses", distinct=True),
        group_use_count=Count(
            "group_memberships" if kind in ("addresses", "services") else "parent_memberships",
            distinct=True,
        ),
    )
    if q:
        cond = Q(name__icontains=q) | Q(description__icontains=q)
        if kind == "addresses":
            cond |= Q(value__icontains=q)
        qs = qs.filter(cond)
    return qs.order_by("name")


# --- analysis findings -----------------------------------------------------------------------

ANALYSE_INLINE_LIMIT = 1500  # above this the editor analyses only when asked (it is O(n²))
FINDINGS_CACHE_SECONDS = 24 * 3600


@dataclass
class Analysis:
    """Findings of one rule set, by rule uuid, plus those about no single rule."""

    by_rule: dict[str, list[dict]] = field(default_factory=dict)
    general: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ran: bool = True

    @property
    def count(self) -> int:
        return sum(1 for items in self.by_rule.values() for f in items if f["primary"]) + len(
            self.general
        )


def _findings_key(ruleset: RuleSet) -> str:
    """Changes with the rule set's content: its latest revision hash, size and last edit."""
    from django.db.models import Max

    latest = ruleset.revisions.order_by("-number").values_list("hash", flat=True).first() or ""
    stats = ruleset.rules.aggregate(n=Count("id"), t=Max("last_updated"))
    digest = hashlib.sha256(f"{latest}|{stats['n']}|{stats['t']}".encode()).hexdigest()[:32]
    return f"rampart-findings-{ruleset.pk}-{digest}"


def ruleset_analysis(ruleset: RuleSet, *, run: bool = False) -> Analysis:
    """The compiler's analysis of a rule set (shadowed, redundant, never-matching rules…).

    Cached by content; computed inline for ordinary sizes, and for huge sets only when
    `run` is asked, so a 10,000-rule set still opens at once.
    """
    from django.core.cache import cache

    key = _findings_key(ruleset)
    cached = cache.get(key)
    if cached is not None:
        return cached
    if not run and ruleset.rules.count() > ANALYSE_INLINE_LIMIT:
        return Analysis(ran=False)
    from compiler import CompilerError, PolicyDocument
    from compiler.analysis import analyse_ruleset
    from rules.selectors import policy_dict

    result = Analysis()
    try:
        doc = PolicyDocument.from_dict(policy_dict(rulesets=[ruleset]))
        findings = analyse_ruleset(doc, ruleset.name, now=timezone.now())
    except CompilerError as exc:
        result.errors = [str(e) for e in exc.errors]
        return result
    positions = {str(u): p for u, p in ruleset.rules.values_list("uuid", "position")}
    label = re.compile(rf"{re.escape(ruleset.name)} rule (\d+) \([0-9a-f-]{{36}}\)")
    for finding in findings:
        data = finding.to_dict()
        data["message"] = label.sub(r"rule #\1", data["message"])  # the table shows the rest
        ids = [r["id"] for r in data["rules"] if r.get("ruleset") == ruleset.name]
        if not ids:
            result.general.append(data)
            continue
        primary, others = ids[0], ids[1:]
        result.by_rule.setdefault(primary, []).append({**data, "primary": True})
        for other in others:
            pos = positions.get(primary, "?")
            result.by_rule.setdefault(other, []).append(
                {
                    "kind": "covers",
                    "severity": "info",
                    "primary": False,
                    "message": f"covers rule #{pos} ({data['kind']})",
                }
            )
    cache.set(key, result, FINDINGS_CACHE_SECONDS)
    return result


def attach_findings(rows: list[RuleRow], analysis: Analysis) -> None:
    for row in rows:
        row.findings = analysis.by_rule.get(str(row.rule.uuid), [])


# --- deployments and counters ------------------------------------------------------------------

DEPLOYMENT_ACTIVE = ("queued", "running")
DEPLOYMENT_BAD = ("failed", "halted")


def deployment_counts(*, since_days: int = 7) -> dict[str, int]:
    from agents.models import Deployment

    since = timezone.now() - timedelta(days=since_days)
    return {
        "running": Deployment.objects.filter(status__in=DEPLOYMENT_ACTIVE).count(),
        "failed": Deployment.objects.filter(
            status__in=DEPLOYMENT_BAD, created_at__gte=since
        ).count(),
        "since_days": since_days,
    }


def deployment_list(status: str = "") -> QuerySet:
    from agents.models import Deployment

    qs = (
        Deployment.objects.select_related("created_by")
        .annotate(
            device_total=Count("device_deployments"),
            device_ok=Count(
                "device_deployments",
                filter=Q(device_deployments__state__in=["confirmed", "unchanged"]),
            ),
            device_bad=Count(
                "device_deployments",
                filter=Q(device_deployments__state__in=["failed", "rolled_back"]),
            ),
        )
        .order_by("-id")
    )
    if status == "active":
        qs = qs.filter(status__in=DEPLOYMENT_ACTIVE)
    elif status:
        qs = qs.filter(status=status)
    return qs


def deployment_waves(deployment) -> list[dict]:
    """Waves with their device deployments, for the progress view."""
    from agents.services import deployment_summary

    devices = list(
        deployment.device_deployments.select_related("device").order_by("wave", "device__name")
    )
    waves = deployment_summary(deployment)["waves"]
    for wave in waves:
        wave["devices"] = [dd for dd in devices if dd.wave == wave["index"]]
        wave["percent"] = int(100 * wave["done"] / wave["size"]) if wave["size"] else 100
    return waves


def device_counters(device: Device, limit: int = 200) -> list[dict]:
    """The device's per-rule counters joined to the rules they count (busiest first)."""
    from agents.models import RuleCounter

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
    from agents.selectors import unused_rules

    rows = unused_rules(since=timezone.now() - timedelta(days=days))
    counted = [r for r in rows if r["counted_since"] is not None]  # deployed somewhere and idle
    return len(counted), counted[:limit]


# --- compiled preview and the diff against what is deployed -------------------------------------


@dataclass
class Preview:
    """A device's bundle as it would deploy now, and its diff against the deployed one."""

    device: Device
    bundle: dict | None = None
    hash: str = ""
    failed_assertions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    deployed: object | None = None  # the last DeviceDeployment that reached the device
    deployed_exact: bool = False  # the reconstruction hashes to what was pushed
    deployed_note: str = ""
    diff: str = ""

    @property
    def unchanged(self) -> bool:
        return bool(
            self.deployed is not None and self.hash and self.hash == self.deployed.bundle_hash
        )


def bundle_text(bundle: dict) -> str:
    """The parts of a bundle a human reviews: ipsets, then iptables-restore per family."""
    parts = []
    for key, title in (
        ("ipsets", "ipset"),
        ("iptables_v4", "iptables (IPv4)"),
        ("iptables_v6", "ip6tables (IPv6)"),
    ):
        if bundle.get(key):
            parts.append(f"# --- {title}\n{bundle[key].rstrip()}\n")
    return "\n".join(parts)


def current_document(device: Device) -> dict:
    """The document a deployment to `device` would freeze now (agents.services.device_document).

    That call may record a revision of a rule set edited behind the services' back; a page
    view must not write, so it runs in a transaction that is rolled back.
    """
    from django.db import transaction

    from agents.services import device_document

    with transaction.atomic():
        doc = device_document(device)
        transaction.set_rollback(True)
    return doc


def compile_document(
    doc: dict, device: Device, now, *, cache_seconds: int = 60
) -> tuple[dict, list[str]]:
    """Compile one device's bundle and check its assertions, as a deployment's worker does.

    Compiling 10,000 rules takes seconds, so results are cached by the document's content
    (and the minute, since rules expire with time): reopening a preview is cheap.
    """
    from django.conf import settings
    from django.core.cache import cache

    from compiler import CompileOptions, PolicyDocument, compile_device, device_assertions

    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{device.name}|{now:%Y%m%d%H%M}|{text}".encode()).hexdigest()[:40]
    key = f"rampart-preview-{digest}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    parsed = PolicyDocument.from_dict(doc)
    options = CompileOptions(ipset_threshold=settings.RAMPART["IPSET_THRESHOLD"])
    bundle = compile_device(parsed, device.name, options=options, now=now)
    failed = [
        r.message()
        for r in device_assertions(parsed, device.name, now=now, options=options)
        if not r.passed
    ]
    result = (bundle.to_dict(), failed)
    cache.set(key, result, cache_seconds)
    return result


def device_preview(device: Device) -> Preview:
    """The bundle a deployment would push now, and its diff against the last one pushed.

    The deployed side is exact: every deployment stores the document it compiled, so the
    last successful one is compiled again at the time it ran (its hash is checked).
    """
    import difflib

    from django.core.exceptions import ValidationError

    from agents.choices import SUCCESS_STATES
    from compiler import CompilerError

    preview = Preview(device=device)
    try:
        preview.bundle, preview.failed_assertions = compile_document(
            current_document(device), device, timezone.now()
        )
    except CompilerError as exc:
        preview.errors = [str(e) for e in exc.errors]
        return preview
    except ValidationError as exc:
        preview.errors = exc.messages
        return preview
    preview.hash = preview.bundle["hash"]
    preview.deployed = (
        device.deployments.filter(state__in=SUCCESS_STATES)
        .exclude(bundle_hash="")
        .select_related("deployment")
        .order_by("-finished_at", "-id")
        .first()
    )
    new_text = bundle_text(preview.bundle).splitlines(True)
    if preview.deployed is None:
        preview.deployed_note = "nothing deployed yet: everything below is new"
        preview.diff = "".join(
            difflib.unified_diff([], new_text, "deployed (nothing)", "to deploy")
        )
        return preview
    if preview.unchanged:
        preview.deployed_exact = True
        return preview
    dd = preview.deployed
    try:
        old, _ = compile_document(
            dd.deployment.document, device, dd.started_at or dd.created_at, cache_seconds=3600
        )  # a past deployment never changes
    except (CompilerError, ValidationError) as exc:
        preview.deployed_note = f"cannot rebuild deployment #{dd.deployment_id}'s bundle: {exc}"
        return preview
    preview.deployed_exact = old["hash"] == dd.bundle_hash
    if not preview.deployed_exact:
        preview.deployed_note = (
            "the rebuilt deployed bundle differs from the hash pushed; the diff is approximate"
        )
    preview.diff = "".join(
        difflib.unified_diff(
            bundle_text(old).splitlines(True),
            new_text,
            f"deployed (deployment #{dd.deployment_id})",
            "to deploy",
        )
    )
    return preview


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
