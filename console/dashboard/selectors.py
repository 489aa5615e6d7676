"""Reads the dashboard needs beyond rules.selectors: page-sized, filter-aware querysets and
the overview numbers. Nothing here writes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from agents.choices import AgentStatus
from agents.models import Device
from rules.choices import Side
from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
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
            Q(literal__icontains=text) | Q(address__name__icontains=text) | Q(address__value__icontains=text)
            | Q(subgroup__name__icontains=text)
        )
        addr = RuleAddress.objects.filter(rule=OuterRef("pk")).filter(
            Q(literal__icontains=text) | Q(address__name__icontains=text)
            | Q(address__value__icontains=text) | Q(group__name__icontains=text) | Q(Exists(addr_member))
        )
        svc_member = ServiceGroupMember.objects.filter(group=OuterRef("group")).filter(
            Q(service__name__icontains=text) | Q(subgroup__name__icontains=text)
        )
        svc = RuleService.objects.filter(rule=OuterRef("pk")).filter(
            Q(service__name__icontains=text) | Q(group__name__icontains=text) | Q(Exists(svc_member))
        )
        cond = (Q(comment__icontains=text) | Q(Exists(addr)) | Q(Exists(svc))
                | Q(in_interface__icontains=text) | Q(out_interface__icontains=text))
        if len(text) >= 4 and all(c in "0123456789abcdef-" for c in text.lower()):
            cond |= Q(uuid__istartswith=text)
        qs = qs.filter(cond)
    return qs


@dataclass
class RuleRow:
    """One rule as the table shows it: references split by side, ready to print."""

    rule: Rule
    sources: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    counter: object | None = None

    @property
    def expired(self) -> bool:
        return bool(self.rule.expires_at and self.rule.expires_at <= timezone.now())

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


def rule_rows(rules) -> list[RuleRow]:
    rows = []
    for rule in rules:
        row = RuleRow(rule)
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
    return Device.objects.prefetch_related("group_links__group", "ruleset_links__ruleset").order_by("name")


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
    return (Rule.objects.select_related("ruleset")
            .filter(enabled=True, expires_at__gt=now, expires_at__lte=now + within)
            .order_by("expires_at")[:limit])


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
            "members__address" if kind == "address-groups" else "members__service", "members__subgroup"
        )
    qs = qs.annotate(
        rule_use_count=Count("rule_uses", distinct=True),
        group_use_count=Count("group_memberships" if kind in ("addresses", "services") else "parent_memberships",
                              distinct=True),
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
        return sum(1 for items in self.by_rule.values() for f in items if f["primary"]) + len(self.general)


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
    from rules.compiler import CompilerError, PolicyDocument
    from rules.compiler.analysis import analyse_ruleset
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
            result.by_rule.setdefault(other, []).append({
                "kind": "covers", "severity": "info", "primary": False,
                "message": f"covers rule #{pos} ({data['kind']})",
            })
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
        "failed": Deployment.objects.filter(status__in=DEPLOYMENT_BAD, created_at__gte=since).count(),
        "since_days": since_days,
    }


def deployment_list(status: str = "") -> QuerySet:
    from agents.models import Deployment

    qs = Deployment.objects.select_related("created_by").annotate(
        device_total=Count("device_deployments"),
        device_ok=Count("device_deployments", filter=Q(device_deployments__state__in=["confirmed", "unchanged"])),
        device_bad=Count("device_deployments", filter=Q(device_deployments__state__in=["failed", "rolled_back"])),
    ).order_by("-id")
    if status == "active":
        qs = qs.filter(status__in=DEPLOYMENT_ACTIVE)
    elif status:
        qs = qs.filter(status=status)
    return qs


def deployment_waves(deployment) -> list[dict]:
    """Waves with their device deployments, for the progress view."""
    from agents.services import deployment_summary

    devices = list(deployment.device_deployments.select_related("device").order_by("wave", "device__name"))
    waves = deployment_summary(deployment)["waves"]
    for wave in waves:
        wave["devices"] = [dd for dd in devices if dd.wave == wave["index"]]
        wave["percent"] = int(100 * wave["done"] / wave["size"]) if wave["size"] else 100
    return waves


def device_counters(device: Device, limit: int = 200) -> list[dict]:
    """The device's per-rule counters joined to the rules they count (busiest first)."""
    from agents.models import RuleCounter

    counters = list(RuleCounter.objects.filter(device=device).order_by("-packets")[:limit])
    rules = {str(r.uuid): r for r in Rule.objects.select_related("ruleset")
             .filter(uuid__in=[c.rule_uuid for c in counters])}
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
        return bool(self.deployed is not None and self.hash and self.hash == self.deployed.bundle_hash)


def bundle_text(bundle: dict) -> str:
    """The parts of a bundle a human reviews: ipsets, then iptables-restore per family."""
    parts = []
    for key, title in (("ipsets", "ipset"), ("iptables_v4", "iptables (IPv4)"), ("iptables_v6", "ip6tables (IPv6)")):
        if bundle.get(key):
            parts.append(f"# --- {title}\n{bundle[key].rstrip()}\n")
    return "\n".join(parts)


def _deployed_bundle(device: Device, dd) -> tuple[dict | None, str]:
    """Recompile what `dd` pushed: the revisions in effect when it compiled, at that time.

    Bundles are not stored, so the deployed text is rebuilt from the revision store
    (rules.revisions.deployable_document) inside a rolled-back transaction: the preview
    never writes. The caller compares the hash with what was pushed to say if it is exact.
    """
    from django.core.exceptions import ValidationError
    from django.db import transaction

    from rules.compiler import CompileOptions, CompilerError, PolicyDocument, compile_device
    from rules.models import RuleSetRevision
    from rules.revisions import deployable_document
    from rules.selectors import policy_dict

    at = dd.started_at or dd.created_at
    names = [rs["name"] for rs in policy_dict(devices=[device])["rulesets"]]
    chosen = []
    for rs in RuleSet.objects.filter(name__in=names):
        rev = RuleSetRevision.objects.filter(ruleset=rs, created__lte=at).order_by("-number").first()
        if rev is None:
            return None, f"rule set {rs.name} has no revision from before {at:%Y-%m-%d %H:%M:%S}"
        chosen.append(rev)
    try:
        with transaction.atomic():
            doc = deployable_document([device], revisions=chosen)
            transaction.set_rollback(True)
        from django.conf import settings

        options = CompileOptions(ipset_threshold=settings.RAMPART["IPSET_THRESHOLD"])
        bundle = compile_device(PolicyDocument.from_dict(doc), device.name, options=options, now=at)
    except (ValidationError, CompilerError) as exc:
        return None, f"cannot rebuild the deployed policy: {exc}"
    return bundle.to_dict(), ""


def device_preview(device: Device) -> Preview:
    """Compile the device's policy as a deployment would (agents.services.compile_for_device)."""
    import difflib

    from django.core.exceptions import ValidationError

    from agents.choices import SUCCESS_STATES
    from agents.services import compile_for_device
    from rules.compiler import CompilerError

    preview = Preview(device=device)
    try:
        compiled = compile_for_device(device)
    except CompilerError as exc:
        preview.errors = [str(e) for e in exc.errors]
        return preview
    except ValidationError as exc:
        preview.errors = exc.messages
        return preview
    preview.bundle, preview.hash, preview.failed_assertions = compiled.bundle, compiled.hash, compiled.failed_assertions
    preview.deployed = (device.deployments.filter(state__in=SUCCESS_STATES).exclude(bundle_hash="")
                        .order_by("-finished_at", "-id").first())
    if preview.deployed is None:
        preview.deployed_note = "nothing deployed yet: everything below is new"
        preview.diff = "".join(difflib.unified_diff(
            [], bundle_text(compiled.bundle).splitlines(True), "deployed (nothing)", "to deploy"))
        return preview
    if preview.unchanged:
        preview.deployed_exact = True
        return preview
    old, note = _deployed_bundle(device, preview.deployed)
    if old is None:
        preview.deployed_note = note
        return preview
    preview.deployed_exact = old["hash"] == preview.deployed.bundle_hash
    if not preview.deployed_exact:
        preview.deployed_note = ("rebuilt from the revisions of that time; its hash differs from the pushed "
                                 "bundle (objects changed since), so names of sets may differ")
    preview.diff = "".join(difflib.unified_diff(
        bundle_text(old).splitlines(True), bundle_text(compiled.bundle).splitlines(True),
        f"deployed (deployment #{preview.deployed.deployment_id})", "to deploy"))
    return preview


def ruleset_devices(ruleset: RuleSet) -> list[Device]:
    """Devices whose policy includes the rule set (directly or through a group)."""
    return list(Device.objects.filter(Q(ruleset_links__ruleset=ruleset)
                                      | Q(group_links__group__ruleset_links__ruleset=ruleset))
                .distinct().order_by("name"))
