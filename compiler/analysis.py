"""Exact rule analysis by set arithmetic (regions.py): shadowed, redundant and
never-matching rules, rules that touch management traffic (management.py), empty groups
and unused objects."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from .document import PolicyDocument, Rule, RuleSet, fallback_rule_id
from .findings import Finding, rule_label
from .interfaces import interface_findings
from .lower import ND_CHAINS, ND_TYPES
from .management import filter_findings, management_region, nat_findings
from .regions import (
    Box,
    Entry,
    TooComplex,
    bbox_meet,
    fm_region,
    interface_reps,
    region_sub,
    regions_meet,
)
from .resolve import FamilyMatch, ProtoSpec, Resolver

__all__ = ["Finding", "analyse_device", "analyse_document", "analyse_ruleset"]


class _SourceIndex:
    """Rules of one family bucketed by source block (/24, /56), so each rule is compared
    with the few whose sources can overlap instead of with every other rule."""

    WIDE = 4  # a rule spanning more buckets than this is compared with everything

    def __init__(self, entries: list, family: int):
        self.shift = 8 if family == 4 else 72
        self.wide: list[int] = []
        self.all: list[int] = []
        self.buckets: dict[int, list[int]] = {}
        for i, e in enumerate(entries):
            bb = e.bbox.get(family)
            if bb is None:
                continue
            self.all.append(i)
            lo, hi = bb[0] >> self.shift, bb[1] >> self.shift
            if hi - lo > self.WIDE:
                self.wide.append(i)
            else:
                for k in range(lo, hi + 1):
                    self.buckets.setdefault(k, []).append(i)

    def near(self, bb: tuple) -> list[int]:
        """Indexes (ascending) of the rules whose sources may overlap `bb`'s."""
        lo, hi = bb[0] >> self.shift, bb[1] >> self.shift
        if hi - lo > self.WIDE:
            return self.all
        found = set(self.wide)
        for k in range(lo, hi + 1):
            found.update(self.buckets.get(k, ()))
        return sorted(found)


class Analyser:
    def __init__(self, doc: PolicyDocument, now: datetime):
        self.doc = doc
        self.now = now
        self.resolver = Resolver(doc)

    def entries(self, rulesets: list[RuleSet], chain: str) -> list[tuple[Rule, Entry]]:
        rules = []
        for rs in rulesets:
            for index, rule in enumerate(rs.rules):
                if rule.chain == chain and rule.active(self.now):
                    rules.append((rs, index, rule))
        sides = [
            (r, self._side(r.in_interface, r.in_zone), self._side(r.out_interface, r.out_zone))
            for _, _, r in rules
        ]
        patterns: tuple[set[str], set[str]] = ({"lo"}, {"lo"})
        for _, in_side, out_side in sides:
            for found, side in zip(patterns, (in_side, out_side), strict=True):
                found.update((side,) if isinstance(side, str) else side or ())
        self.reps = (interface_reps(patterns[0]), interface_reps(patterns[1]))
        out = []
        for (rs, index, rule), (_, in_side, out_side) in zip(rules, sides, strict=True):
            rid = rule.id or fallback_rule_id(rs.name, "rules", index)
            region = {
                fm.family: fm_region(fm, in_side, out_side, rule.states, self.reps)
                for fm in self.resolver.rule(rule)
            }
            out.append(
                (
                    rule,
                    Entry(
                        rid,
                        rs.name,
                        index + 1,
                        rule.action,
                        region,
                        rule.rate_limit is None and rule.rate_limit_per_source is None,
                        rule_label(rs.name, index + 1, rid),
                    ),
                )
            )
        return out

    def _side(self, iface: str | None, zone: str | None) -> str | tuple[str, ...] | None:
        """A rule's interface on one side: its own, its zone's (any of them), or None."""
        return iface if zone is None else self.doc.by_name["zones"][zone].interfaces

    def fixed_entries(self, device, chain: str) -> list[Entry]:
        """The device's fixed steps, as rules that come before every rule set."""
        reps = self.reps
        out = []

        def add(key: str, action: str, fams: dict[int, list[Box]], label: str) -> None:
            out.append(Entry(f"sys:{key}", None, None, action, fams, True, label))

        if device.allow_loopback and chain != "forward":
            fm = {f: FamilyMatch(f, None, False, None, False, (ProtoSpec(),)) for f in (4, 6)}
            in_if, out_if = ("lo", None) if chain == "input" else (None, "lo")
            add(
                "loopback",
                "accept",
                {f: fm_region(m, in_if, out_if, (), reps) for f, m in fm.items()},
                "loopback",
            )
        if device.stateful:
            any_fm = {f: FamilyMatch(f, None, False, None, False, (ProtoSpec(),)) for f in (4, 6)}
            add(
                "conntrack",
                "accept",
                {
                    f: fm_region(m, None, None, ("established", "related"), reps)
                    for f, m in any_fm.items()
                },
                "conntrack (established, related)",
            )
            add(
                "conntrack",
                "drop",
                {f: fm_region(m, None, None, ("invalid",), reps) for f, m in any_fm.items()},
                "conntrack (invalid)",
            )
        if chain in ND_CHAINS and device.default_policy(chain) != "accept":
            # hop limit 255 is not a dimension of the regions: a message with another hop
            # limit was routed and is invalid, so "every packet it matches" is meant as
            # every neighbour discovery message the host would accept
            nd = FamilyMatch(
                6,
                None,
                False,
                None,
                False,
                tuple(ProtoSpec("icmpv6", icmp_type=t) for t in ND_TYPES),
            )
            add(
                "icmpv6-nd",
                "accept",
                {6: fm_region(nd, None, None, (), reps)},
                "ICMPv6 neighbour discovery (hop limit 255)",
            )
        if chain == "input" and device.management_sources:
            fams = management_region(device, self.resolver, reps)
            add("mgmt", "accept", fams, "anti-lockout (management sources)")
        return out

    def chain_findings(
        self, entries: list[Entry], default: str | None, focus: str | None = None
    ) -> list[Finding]:
        """Findings of every rule; with `focus` (a rule id) only of that rule and the rules
        after it, the only ones a finding naming it can be about (none when the rule is
        not in this chain): what the editor's live analysis needs, at a fraction of the
        cost for a rule near the end."""
        start = 0
        if focus is not None:
            start = next((i for i, e in enumerate(entries) if e.key == focus), len(entries))
        findings = []
        indexes = {fam: _SourceIndex(entries, fam) for fam in (4, 6)}
        for idx, entry in enumerate(entries):
            if entry.ruleset is None or idx < start:
                continue
            fams = {f: r for f, r in entry.region.items() if r}
            if not fams:
                findings.append(
                    Finding(
                        "never_matches",
                        "warning",
                        f"{entry.label} can never match: its addresses, services or interfaces "
                        "leave no packet (an empty group, or an address family its other fields "
                        "exclude)",
                        [entry.ref()],
                    )
                )
                continue
            near = {fam: indexes[fam].near(entry.bbox[fam]) for fam in fams}
            earlier = {
                fam: [entries[j] for j in near[fam] if j < idx and entries[j].complete]
                for fam in fams
            }
            later = {fam: [entries[j] for j in near[fam] if j > idx] for fam in fams}
            try:
                finding = self.rule_finding(entry, fams, earlier, later, default)
            except TooComplex:
                finding = Finding(
                    "incomplete",
                    "info",
                    f"{entry.label}: too many overlapping rules for an exact answer; not analysed",
                    [entry.ref()],
                )
            if finding:
                findings.append(finding)
        return findings

    def rule_finding(
        self,
        entry: Entry,
        fams: dict,
        earlier: dict[int, list[Entry]],
        later: dict[int, list[Entry]],
        default: str | None,
    ) -> Finding | None:
        """`earlier`/`later`: per family, the other rules whose sources may overlap."""
        covering: dict[str, Entry] = {}
        fully_covered = True
        removable = True
        for fam, region in fams.items():
            residual = region
            mine = entry.bbox.get(fam)
            for e in earlier[fam]:
                if not bbox_meet(mine, e.bbox.get(fam)):
                    continue
                other = e.region[fam]
                if regions_meet(residual, other):
                    covering.setdefault(e.label, e)
                    residual = region_sub(residual, other)
                if not residual:
                    break
            if residual:
                fully_covered = False
                if not self.falls_through_same(entry, fam, residual, later[fam], default):
                    removable = False
        if fully_covered:
            others = [e for e in covering.values() if e.action != entry.action]
            names = ", ".join(f"{e.label} ({e.action})" for e in covering.values())
            if others:
                return Finding(
                    "shadowed",
                    "warning",
                    f"{entry.label} ({entry.action}) is shadowed: {names} "
                    f"{'matches' if len(covering) == 1 else 'match'} every packet it "
                    "would, so it never decides anything",
                    [entry.ref()] + [e.ref() for e in covering.values()],
                )
            return Finding(
                "redundant",
                "info",
                f"{entry.label} is redundant: {names} already "
                f"{entry.action} every packet it matches",
                [entry.ref()] + [e.ref() for e in covering.values()],
            )
        if removable:
            return Finding(
                "redundant",
                "info",
                f"{entry.label} is redundant: without it every packet it decides "
                f"would still get {entry.action} from the rules after it"
                + (" or the default policy" if default else ""),
                [entry.ref()],
            )
        return None

    def falls_through_same(
        self, entry: Entry, fam: int, residual: list[Box], later: list[Entry], default: str | None
    ) -> bool:
        """Would the packets `entry` decides get the same verdict without it?"""
        mine = entry.bbox.get(fam)
        for e in later:
            if not bbox_meet(mine, e.bbox.get(fam)):
                continue
            other = e.region[fam]
            if not regions_meet(residual, other):
                continue
            if e.action != entry.action:
                return False
            if e.complete:
                residual = region_sub(residual, other)
                if not residual:
                    return True
        return default == entry.action

    # ---- objects
    def object_findings(self, rulesets: list[RuleSet] | None = None) -> list[Finding]:
        doc = self.doc
        findings = []
        used = names_used(doc, rulesets) if rulesets is not None else None
        for g in doc.address_groups:
            if used is not None and g.name not in used:
                continue
            if not self.resolver.networks(g.name):
                findings.append(
                    Finding(
                        "empty_group",
                        "warning",
                        f"address group {g.name} holds no address: rules "
                        "using it as a source or destination never match",
                        objects=[g.name],
                    )
                )
        for sg in doc.service_groups:
            if used is not None and sg.name not in used:
                continue
            if not self.resolver.service_specs(sg.name):
                findings.append(
                    Finding(
                        "empty_group",
                        "warning",
                        f"service group {sg.name} holds no service",
                        objects=[sg.name],
                    )
                )
        if rulesets is not None:
            return findings
        used_by_kind = self.used_names()
        for kind, label in (
            ("addresses", "address"),
            ("address_groups", "address group"),
            ("services", "service"),
            ("service_groups", "service group"),
            ("rulesets", "rule set"),
            ("device_groups", "device group"),
        ):
            for obj in getattr(doc, kind):
                if obj.name not in used_by_kind[kind]:
                    findings.append(
                        Finding(
                            "unused", "info", f"{label} {obj.name} is not used", objects=[obj.name]
                        )
                    )
        return findings

    def used_names(self) -> dict[str, set[str]]:
        doc = self.doc
        addr_refs: set[str] = set()
        svc_refs: set[str] = set()
        for rs in doc.rulesets:
            for r in rs.rules:
                addr_refs.update(r.sources, r.destinations)
                svc_refs.update(r.services)
            for n in rs.nat:
                addr_refs.update(n.sources, n.destinations)
        for d in doc.devices:
            addr_refs.update(d.management_sources)
        for g in doc.address_groups:
            addr_refs.update(g.members)
        for sg in doc.service_groups:
            svc_refs.update(sg.members)
        rs_used = {n for g in doc.device_groups for n in g.rulesets}
        rs_used |= {n for d in doc.devices for n in d.rulesets}
        dg_used = {g for d in doc.devices for g in d.groups}
        return {
            "addresses": addr_refs,
            "address_groups": addr_refs,
            "services": svc_refs,
            "service_groups": svc_refs,
            "rulesets": rs_used,
            "device_groups": dg_used,
        }


def names_used(doc: PolicyDocument, rulesets: list[RuleSet]) -> set[str]:
    """Every group a rule set references, directly or through other groups."""
    groups = doc.by_name["address_groups"]
    sgroups = doc.by_name["service_groups"]
    todo: list[tuple[str, dict]] = []
    for rs in rulesets:
        for r in rs.rules:
            todo.extend((ref, groups) for ref in r.sources + r.destinations)
            todo.extend((ref, sgroups) for ref in r.services)
        for n in rs.nat:
            todo.extend((ref, groups) for ref in n.sources + n.destinations)
    seen: set[str] = set()
    while todo:
        ref, table = todo.pop()
        if ref in seen or ref not in table:
            continue
        seen.add(ref)
        todo.extend((m, table) for m in table[ref].members if m in table)
    return seen


def analyse_ruleset(
    doc: PolicyDocument, ruleset_name: str, *, now: datetime, focus: str | None = None
) -> list[Finding]:
    """Findings of one rule set on its own (no device: no fixed steps, no default). With
    `focus` (a rule id), the rule findings are only those that can name that rule (see
    `Analyser.chain_findings`)."""
    analyser = Analyser(doc, now)
    rs = doc.ruleset(ruleset_name)
    findings = []
    for chain in ("input", "forward", "output"):
        entries = [e for _, e in analyser.entries([rs], chain)]
        findings.extend(analyser.chain_findings(entries, None, focus))
    findings.sort(key=lambda f: min((r["position"] or 0) for r in f.rules) if f.rules else 0)
    return findings + analyser.object_findings([rs])


def analyse_device(
    doc: PolicyDocument,
    device_name: str,
    *,
    now: datetime,
    interfaces: Iterable[str] | None = None,
    focus: str | None = None,
) -> list[Finding]:
    """Findings over a device's whole evaluation order: fixed steps, every rule set, default;
    and the rules that would touch its management traffic. With the host's `interfaces`
    (its facts), interfaces the policy names that it lacks are warnings too. `focus`: as
    in `analyse_ruleset`."""
    analyser = Analyser(doc, now)
    device = doc.device(device_name)
    rulesets = list({rs.name: rs for rs in doc.device_rulesets(device)}.values())
    findings = []
    for chain in ("input", "forward", "output"):
        user = [e for _, e in analyser.entries(rulesets, chain)]
        entries = analyser.fixed_entries(device, chain) + user
        found = analyser.chain_findings(entries, device.default_policy(chain), focus)
        findings.extend(found)
        if chain == "input":
            # a rule the shadow finding already says the anti-lockout covers needs no second
            said = {f.rules[0]["id"] for f in found if any(r["id"] == "sys:mgmt" for r in f.rules)}
            mgmt = management_region(device, analyser.resolver, analyser.reps)
            findings.extend(filter_findings(device, mgmt, [e for e in user if e.key not in said]))
    findings.extend(nat_findings(device, rulesets, analyser.resolver))
    if interfaces is not None:
        findings.extend(interface_findings(doc, device_name, interfaces))
    return findings + analyser.object_findings(rulesets)


def analyse_document(doc: PolicyDocument, *, now: datetime) -> list[Finding]:
    """Every rule set on its own, the rules that would touch a device's management traffic,
    plus empty groups and unused objects."""
    analyser = Analyser(doc, now)
    findings = []
    inputs: dict[str, tuple[list[Entry], tuple[frozenset, frozenset]]] = {}
    for rs in doc.rulesets:
        for chain in ("input", "forward", "output"):
            entries = [e for _, e in analyser.entries([rs], chain)]
            findings.extend(analyser.chain_findings(entries, None))
            if chain == "input":
                inputs[rs.name] = (entries, analyser.reps)
    for device in doc.devices:
        if not device.management_sources:
            continue
        rulesets = list({rs.name: rs for rs in doc.device_rulesets(device)}.values())
        for rs in rulesets:
            entries, reps = inputs[rs.name]
            mgmt = management_region(device, analyser.resolver, reps)
            findings.extend(filter_findings(device, mgmt, entries))
        findings.extend(nat_findings(device, rulesets, analyser.resolver))
    return findings + analyser.object_findings()
