"""Names → sets of networks, ports and protocols, per address family.

The lowering, the analysis and the assertions all start from `ResolvedRule`, so a name means
the same thing to each of them. Networks are collapsed (overlaps merged, adjacent blocks
joined) so an ipset's content — and so its name — does not depend on how it was written.
"""

from __future__ import annotations

from typing import NamedTuple

from . import nets as N
from . import values as V
from .document import PolicyDocument, Rule

Nets = tuple[N.Net, ...]
PortRanges = tuple[tuple[int, int], ...]

_PROTO_ORDER = {None: 0, "tcp": 1, "udp": 2, "icmp": 3, "icmpv6": 4}


class ProtoSpec(NamedTuple):
    """One protocol alternative of a rule: protocol (None = any) with its ports or type."""

    protocol: str | None = None
    dports: PortRanges | None = None
    sports: PortRanges | None = None
    icmp_type: int | None = None

    def sort_key(self) -> tuple:
        return (
            _PROTO_ORDER[self.protocol],
            self.sports or (),
            self.dports or (),
            -1 if self.icmp_type is None else self.icmp_type,
        )


ANY_PROTO = (ProtoSpec(),)


class FamilyMatch(NamedTuple):
    """What a rule matches within one address family. `src`/`dst` None = any address."""

    family: int
    src: Nets | None
    src_negate: bool
    dst: Nets | None
    dst_negate: bool
    protos: tuple[ProtoSpec, ...]


def merge_ports(ranges: list[tuple[int, int]] | PortRanges) -> PortRanges:
    """Sorted, disjoint, non-adjacent port ranges."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((a, b) for a, b in out)


def collapse(nets: list[N.Net] | tuple[N.Net, ...]) -> dict[int, Nets]:
    """Split by family and collapse: {4: (...), 6: (...)}, families without nets left out."""
    by_family: dict[int, list[N.Net]] = {}
    for net in nets:
        by_family.setdefault(net.version, []).append(net)
    return {fam: N.collapse(items) for fam, items in sorted(by_family.items())}


class Resolver:
    """Resolves names of one document; results are cached per name."""

    def __init__(self, doc: PolicyDocument):
        self.doc = doc
        self._addr: dict[str, tuple[N.Net, ...] | list[N.Net]] = {}
        self._svc: dict[str, list[ProtoSpec]] = {}
        self._refs: dict[tuple[str, ...], dict[int, Nets]] = {}
        self._addr_names = doc.by_name["addresses"]
        self._group_names = doc.by_name["address_groups"]
        self._literals = doc.literals

    # ---- addresses
    def port_list(self, texts: tuple[str, ...]) -> PortRanges | None:
        if not texts:
            return None
        if len(texts) == 1:
            return (self.port(texts[0]),)
        return merge_ports([self.port(p) for p in texts])

    def port(self, text: str) -> tuple[int, int]:
        found = self.doc.ports.get(text)
        return found if found is not None else V.parse_port(text)

    def literal(self, text: str) -> tuple[N.Net, ...]:
        found = self.doc.literals.get(text)
        return found if found is not None else N.parse(text)

    def networks(self, ref: str) -> tuple[N.Net, ...] | list[N.Net]:
        """All networks a name or literal stands for (uncollapsed)."""
        cached = self._addr.get(ref)
        if cached is not None:
            return cached
        addresses = self.doc.by_name["addresses"]
        groups = self.doc.by_name["address_groups"]
        if ref in addresses:
            result: tuple[N.Net, ...] | list[N.Net] = self.literal(addresses[ref].value)
        elif ref in groups:
            result = []
            literals = self.doc.literals
            for member in groups[ref].members:
                if member in literals and member not in addresses and member not in groups:
                    result.extend(literals[member])
                else:
                    result.extend(self.networks(member))
        else:
            result = self.literal(ref)
        self._addr[ref] = result
        return result

    def addresses(self, refs: tuple[str, ...]) -> dict[int, Nets]:
        """Collapsed networks per family of a list of references."""
        cached = self._refs.get(refs)
        if cached is None:
            if len(refs) == 1:
                single = self.doc.literals.get(refs[0])
                if single is not None and len(single) == 1 and not self._is_name(refs[0]):
                    return {single[0].version: single}  # the common case, kept cheap
                nets = self.networks(refs[0])
            else:
                nets = [n for ref in refs for n in self.networks(ref)]
            cached = self._refs[refs] = collapse(nets)
        return cached

    def simple_net(self, ref: str) -> tuple[N.Net] | None:
        """The one network of a literal host/CIDR (not 0/0), else None (names, ranges, …)."""
        found = self._literals.get(ref)
        if (
            found is None
            or len(found) != 1
            or found[0].plen == 0
            or ref in self._addr_names
            or ref in self._group_names
        ):
            return None
        return found

    def _is_name(self, ref: str) -> bool:
        return ref in self._addr_names or ref in self._group_names

    # ---- services
    def service_specs(self, ref: str) -> list[ProtoSpec]:
        cached = self._svc.get(ref)
        if cached is not None:
            return cached
        services = self.doc.by_name["services"]
        if ref in services:
            svc = services[ref]
            proto = None if svc.protocol == "any" else svc.protocol
            icmp = (
                V.parse_icmp_type(svc.protocol, svc.icmp_type)
                if svc.icmp_type is not None
                else None
            )
            result = [
                ProtoSpec(proto, self.port_list(svc.ports), self.port_list(svc.source_ports), icmp)
            ]
        else:
            result = []
            for member in self.doc.by_name["service_groups"][ref].members:
                result.extend(self.service_specs(member))
        self._svc[ref] = result
        return result

    def protos(self, rule: Rule) -> tuple[ProtoSpec, ...]:
        """The protocol alternatives of a rule, normalised (any absorbs everything)."""
        if not rule.services:
            if rule.protocol in (None, "any"):
                return ANY_PROTO
            dports = self.port_list(rule.dports)
            sports = self.port_list(rule.sports)
            icmp = (
                V.parse_icmp_type(rule.protocol, rule.icmp_type)
                if rule.icmp_type is not None
                else None
            )
            return (ProtoSpec(rule.protocol, dports, sports, icmp),)
        specs = [s for ref in rule.services for s in self.service_specs(ref)]
        return normalise_protos(specs)

    # ---- rules
    def rule(self, rule: Rule) -> list[FamilyMatch]:
        """Per-family matches of a rule; empty when it can match nothing. A zone with
        networks narrows the side it stands for (see `narrow_to_zones`)."""
        matches = self._rule(rule)
        if (rule.in_zone is None and rule.out_zone is None) or not matches:
            return matches
        src, dst = self.zone_networks(rule.in_zone, rule.out_zone)
        if src is None and dst is None:
            return matches
        return narrow_to_zones(matches, src, dst)

    def zone_networks(
        self, in_zone: str | None, out_zone: str | None
    ) -> tuple[dict[int, Nets] | None, dict[int, Nets] | None]:
        """The networks of the in-zone (sources) and the out-zone (destinations), per
        family; None for a side without a zone or whose zone lists no networks."""
        zones = self.doc.by_name["zones"]
        out: list[dict[int, Nets] | None] = []
        for name in (in_zone, out_zone):
            nets = zones[name].networks if name is not None else ()
            out.append(self.addresses(nets) if nets else None)
        return out[0], out[1]

    def _rule(self, rule: Rule) -> list[FamilyMatch]:
        fast = self._simple(rule)
        if fast is not None:
            return fast
        protos = self.protos(rule)
        src = self.addresses(rule.sources) if rule.sources else None
        dst = self.addresses(rule.destinations) if rule.destinations else None
        out = []
        icmp = any(p.protocol in ("icmp", "icmpv6") for p in protos)
        for fam in (4, 6):
            fam_protos = protos
            if icmp:
                fam_protos = tuple(p for p in protos if _proto_in_family(p.protocol, fam))
                if not fam_protos:
                    continue
            s = _side(src, fam, rule.sources_negate)
            d = _side(dst, fam, rule.destinations_negate)
            if s is False or d is False:
                continue
            out.append(
                FamilyMatch(
                    fam,
                    s[0] if s else None,
                    bool(s and s[1]),
                    d[0] if d else None,
                    bool(d and d[1]),
                    fam_protos,
                )
            )
        return out

    def _simple(self, rule: Rule) -> list[FamilyMatch] | None:
        """The frequent shape (literal tcp/udp, one literal host/CIDR per side) without the
        general machinery; None when the rule is not of that shape."""
        if (
            rule.services
            or rule.protocol not in ("tcp", "udp")
            or len(rule.sources) != 1
            or (len(rule.destinations) > 1)
        ):
            return None
        literals = self.doc.literals
        src = literals.get(rule.sources[0])
        if src is None or len(src) != 1 or src[0].plen == 0 or self._is_name(rule.sources[0]):
            return None
        dst = None
        if rule.destinations:
            dst = literals.get(rule.destinations[0])
            if (
                dst is None
                or len(dst) != 1
                or dst[0].plen == 0
                or dst[0].version != src[0].version
                or self._is_name(rule.destinations[0])
            ):
                return None
        spec = ProtoSpec(
            rule.protocol, self.port_list(rule.dports), self.port_list(rule.sports), None
        )
        return [
            FamilyMatch(
                src[0].version, src, rule.sources_negate, dst, rule.destinations_negate, (spec,)
            )
        ]


def narrow_to_zones(
    matches: list[FamilyMatch], src: dict[int, Nets] | None, dst: dict[int, Nets] | None
) -> list[FamilyMatch]:
    """`matches` within the in-zone's networks (sources) and the out-zone's (destinations);
    None: that zone lists none. A family the zone has no network of, or a side left empty,
    drops out: the rule matches no packet of it. Negated sides become plain ones (within
    the zone's networks, minus the rule's)."""
    out = []
    for fm in matches:
        s_nets, s_neg = _within(fm.src, fm.src_negate, src, fm.family)
        d_nets, d_neg = _within(fm.dst, fm.dst_negate, dst, fm.family)
        if s_nets == () or d_nets == ():
            continue
        out.append(FamilyMatch(fm.family, s_nets, s_neg, d_nets, d_neg, fm.protos))
    return out


def _within(
    nets: Nets | None, negate: bool, zone: dict[int, Nets] | None, family: int
) -> tuple[Nets | None, bool]:
    """One side of a match within a zone's networks: ((), _) when nothing is left."""
    if zone is None:
        return nets, negate
    allowed = zone.get(family)
    if not allowed:
        return (), False  # the zone's networks are all of the other family
    if allowed[0].plen == 0:
        return nets, negate  # the whole family: no narrowing
    if nets is None:
        return allowed, False
    return (N.subtract(allowed, nets) if negate else N.intersect(allowed, nets)), False


def _proto_in_family(protocol: str | None, family: int) -> bool:
    return not ((protocol == "icmp" and family == 6) or (protocol == "icmpv6" and family == 4))


def _side(resolved: dict[int, Nets] | None, fam: int, negate: bool):
    """(nets, negate) for a family; None = any address; False = no packet of this family.

    A side with addresses of only one family restricts the rule to that family; a side
    whose references hold no address at all matches nothing (negated: everything).
    """
    if resolved is None:
        return None
    if not resolved:
        return None if negate else False
    nets = resolved.get(fam)
    if nets is None:
        return False
    if nets[0].plen == 0:
        return False if negate else None
    return nets, negate


def normalise_protos(specs: list[ProtoSpec]) -> tuple[ProtoSpec, ...]:
    """Merge alternatives: one spec per (protocol, sports), dports unioned; any wins."""
    if any(s.protocol is None for s in specs):
        return ANY_PROTO
    merged: dict[tuple, ProtoSpec] = {}
    for spec in specs:
        if spec.protocol in ("icmp", "icmpv6"):
            if (spec.protocol, None) in merged:
                continue
            if spec.icmp_type is None:
                merged = {k: v for k, v in merged.items() if k[0] != spec.protocol}
            merged[(spec.protocol, spec.icmp_type)] = spec
            continue
        key = (spec.protocol, spec.sports)
        prev = merged.get(key)
        if prev is None:
            merged[key] = spec
        elif prev.dports is None or spec.dports is None:
            merged[key] = ProtoSpec(spec.protocol, None, spec.sports)
        else:
            merged[key] = ProtoSpec(
                spec.protocol, merge_ports(prev.dports + spec.dports), spec.sports
            )
    # a protocol with no port restriction at all absorbs its other alternatives
    for proto in ("tcp", "udp"):
        if (proto, None) in merged and merged[(proto, None)].dports is None:
            merged = {k: v for k, v in merged.items() if k[0] != proto or k[1] is None}
    return tuple(sorted(merged.values(), key=ProtoSpec.sort_key))
