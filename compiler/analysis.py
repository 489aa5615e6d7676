"""Exact rule analysis by set arithmetic: shadowed, redundant and never-matching rules,
empty groups and unused objects.

A rule is a union of boxes in the space source × destination × protocol × source port ×
destination port × ICMP type × in-interface × out-interface × conntrack state (per address
family and chain). Addresses and ports are integer intervals, so 198.18.0.0/24 covers
198.18.0.7 by arithmetic, never by comparing strings. Interfaces become a finite set of
representative names (every exact name used, one name per wildcard, one for "anything
else"), which is exact for the patterns the rules use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .document import PolicyDocument, Rule, RuleSet, fallback_rule_id
from .lower import ND_TYPES
from .resolve import FamilyMatch, ProtoSpec, Resolver, merge_ports
from .tracer import iface_matches

Intervals = tuple[tuple[int, int], ...]
Box = tuple  # (src, dst, proto, sport, dport, icmp, in_if, out_if, states)

_PROTO_NUM = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
_FULL_ADDR = {4: ((0, 2**32 - 1),), 6: ((0, 2**128 - 1),)}
_FULL_PROTO = ((0, 255),)
_FULL_PORT = ((0, 65535),)
_FULL_ICMP = ((0, 255),)
STATES = frozenset(("new", "established", "related", "invalid", "untracked"))
MAX_BOXES = 4000


# ---------------------------------------------------------------- interval and box algebra


def iv_and(a: Intervals, b: Intervals) -> Intervals:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def iv_sub(a: Intervals, b: Intervals) -> Intervals:
    out = []
    for lo, hi in a:
        for blo, bhi in b:
            if bhi < lo or blo > hi:
                continue
            if blo > lo:
                out.append((lo, blo - 1))
            lo = bhi + 1
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return tuple(out)


def _and(x, y):
    return x & y if isinstance(x, frozenset) else iv_and(x, y)


def _sub(x, y):
    return x - y if isinstance(x, frozenset) else iv_sub(x, y)


def box_and(a: Box, b: Box) -> Box | None:
    out = []
    for x, y in zip(a, b, strict=True):
        z = _and(x, y)
        if not z:
            return None
        out.append(z)
    return tuple(out)


def box_sub(a: Box, b: Box) -> list[Box]:
    """a − b as disjoint boxes."""
    if box_and(a, b) is None:
        return [a]
    pieces = []
    current = list(a)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        diff = _sub(x, y)
        if diff:
            piece = list(current)
            piece[i] = diff
            pieces.append(tuple(piece))
        current[i] = _and(x, y)
    return pieces


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


class TooComplex(Exception):
    """The exact answer needs more boxes than we are willing to compute."""


def region_sub(region: list[Box], boxes: list[Box]) -> list[Box]:
    for b in boxes:
        out = []
        for a in region:
            out.extend(box_sub(a, b))
        region = out
        if len(region) > MAX_BOXES:
            raise TooComplex
        if not region:
            break
    return region


def regions_meet(a: list[Box], b: list[Box]) -> bool:
    return any(box_and(x, y) is not None for x in a for y in b)


# ---------------------------------------------------------------- rules as regions


def _addr(family: int, nets, negate: bool) -> Intervals:
    if nets is None:
        return _FULL_ADDR[family]
    ivs = tuple((n.first, n.last) for n in nets)
    return iv_sub(_FULL_ADDR[family], ivs) if negate else ivs


def _ifaces(pattern: str | None, reps: frozenset[str]) -> frozenset[str]:
    if pattern is None:
        return reps
    return frozenset(r for r in reps if iface_matches(pattern, r))


def interface_reps(patterns: set[str]) -> frozenset[str]:
    reps = {"~"}
    for p in patterns:
        reps.add(p[:-1] + "~" if p.endswith("+") else p)
    return frozenset(reps)


def fm_region(
    fm: FamilyMatch,
    in_if: str | None,
    out_if: str | None,
    states: tuple[str, ...],
    reps: tuple[frozenset, frozenset],
) -> list[Box]:
    src = _addr(fm.family, fm.src, fm.src_negate)
    dst = _addr(fm.family, fm.dst, fm.dst_negate)
    ins, outs = _ifaces(in_if, reps[0]), _ifaces(out_if, reps[1])
    sts = frozenset(states) if states else STATES
    if not (src and dst and ins and outs):
        return []
    boxes = []
    for spec in fm.protos:
        proto = _FULL_PROTO if spec.protocol is None else ((_PROTO_NUM[spec.protocol],) * 2,)
        boxes.append(
            (
                src,
                dst,
                proto,
                spec.sports or _FULL_PORT,
                spec.dports or _FULL_PORT,
                ((spec.icmp_type,) * 2,) if spec.icmp_type is not None else _FULL_ICMP,
                ins,
                outs,
                sts,
            )
        )
    return boxes


@dataclass
class Entry:
    """One rule of a chain under analysis."""

    key: str  # rule id or sys:<what>
    ruleset: str | None
    position: int | None
    action: str
    region: dict[int, list[Box]]  # per family
    complete: bool = True  # False: rate limited, so it does not always take
    label: str = ""
    bbox: dict[int, tuple] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # per family: the bounds of source, destination, protocol and dport, so most pairs
        # of rules are found disjoint without any box arithmetic
        for fam, boxes in self.region.items():
            if boxes:
                self.bbox[fam] = tuple(
                    f(b[dim][0 if f is min else -1][0 if f is min else 1] for b in boxes)
                    for dim in (0, 1, 2, 4)
                    for f in (min, max)
                )

    def ref(self) -> dict:
        return {"ruleset": self.ruleset, "position": self.position, "id": self.key}


def bbox_meet(a: tuple | None, b: tuple | None) -> bool:
    if a is None or b is None:
        return False
    return (
        a[0] <= b[1]
        and b[0] <= a[1]
        and a[2] <= b[3]
        and b[2] <= a[3]
        and a[4] <= b[5]
        and b[4] <= a[5]
        and a[6] <= b[7]
        and b[6] <= a[7]
    )


@dataclass
class Finding:
    kind: str  # shadowed | redundant | never_matches | empty_group | unused | incomplete
    severity: str  # warning | info
    message: str
    rules: list[dict] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "rules": self.rules,
            "objects": self.objects,
        }


def _label(ruleset: str, position: int, rule_id: str) -> str:
    return f"{ruleset} rule {position} ({rule_id})"


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
        patterns = (
            {"lo"} | {r.in_interface for _, _, r in rules if r.in_interface},
            {"lo"} | {r.out_interface for _, _, r in rules if r.out_interface},
        )
        self.reps = (interface_reps(patterns[0]), interface_reps(patterns[1]))
        out = []
        for rs, index, rule in rules:
            rid = rule.id or fallback_rule_id(rs.name, "rules", index)
            region = {
                fm.family: fm_region(
                    fm, rule.in_interface, rule.out_interface, rule.states, self.reps
                )
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
                        rule.rate_limit is None,
                        _label(rs.name, index + 1, rid),
                    ),
                )
            )
        return out

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
        if device.default_policy(chain) != "accept":
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
                "ICMPv6 neighbour discovery",
            )
        if chain == "input" and device.management_sources:
            fams = {}
            ports = merge_ports([(22, 22), (device.agent_port, device.agent_port)])
            for fam, nets in self.resolver.addresses(device.management_sources).items():
                fm = FamilyMatch(fam, nets, False, None, False, (ProtoSpec("tcp", ports),))
                fams[fam] = fm_region(fm, None, None, (), reps)
            add("mgmt", "accept", fams, "anti-lockout (management sources)")
        return out

    def chain_findings(self, entries: list[Entry], default: str | None) -> list[Finding]:
        findings = []
        indexes = {fam: _SourceIndex(entries, fam) for fam in (4, 6)}
        for idx, entry in enumerate(entries):
            if entry.ruleset is None:
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
        for g in doc.service_groups:
            if used is not None and g.name not in used:
                continue
            if not self.resolver.service_specs(g.name):
                findings.append(
                    Finding(
                        "empty_group",
                        "warning",
                        f"service group {g.name} holds no service",
                        objects=[g.name],
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
        for g in doc.service_groups:
            svc_refs.update(g.members)
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


def analyse_ruleset(doc: PolicyDocument, ruleset_name: str, *, now: datetime) -> list[Finding]:
    """Findings of one rule set on its own (no device: no fixed steps, no default)."""
    analyser = Analyser(doc, now)
    rs = doc.ruleset(ruleset_name)
    findings = []
    for chain in ("input", "forward", "output"):
        entries = [e for _, e in analyser.entries([rs], chain)]
        findings.extend(analyser.chain_findings(entries, None))
    findings.sort(key=lambda f: min((r["position"] or 0) for r in f.rules) if f.rules else 0)
    return findings + analyser.object_findings([rs])


def analyse_device(doc: PolicyDocument, device_name: str, *, now: datetime) -> list[Finding]:
    """Findings over a device's whole evaluation order: fixed steps, every rule set, default."""
    analyser = Analyser(doc, now)
    device = doc.device(device_name)
    rulesets = list({rs.name: rs for rs in doc.device_rulesets(device)}.values())
    findings = []
    for chain in ("input", "forward", "output"):
        user = [e for _, e in analyser.entries(rulesets, chain)]
        entries = analyser.fixed_entries(device, chain) + user
        findings.extend(analyser.chain_findings(entries, device.default_policy(chain)))
    return findings + analyser.object_findings(rulesets)


def analyse_document(doc: PolicyDocument, *, now: datetime) -> list[Finding]:
    """Every rule set on its own, plus empty groups and unused objects."""
    analyser = Analyser(doc, now)
    findings = []
    for rs in doc.rulesets:
        for chain in ("input", "forward", "output"):
            entries = [e for _, e in analyser.entries([rs], chain)]
            findings.extend(analyser.chain_findings(entries, None))
    return findings + analyser.object_findings()
