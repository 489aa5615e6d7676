"""The nat table: each rule set's NAT rules, in `RPT-PREROUTING`/`-OUTPUT`/`-POSTROUTING`,
after the device's management exemption (static.nat_exemption) where that chain exists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..document import NatRule, RuleSet, Zone, fallback_rule_id, parse_nat_target
from ..ir import DNAT, JUMP, MASQUERADE, REDIRECT, SNAT, Chain, RuleInfo, Table
from ..ir import Rule as IRRule
from ..resolve import FamilyMatch, ProtoSpec, Resolver, merge_ports, narrow_to_zones
from ..values import parse_port
from .expand import Expander
from .names import short_hash
from .zones import interface_pairs, zone_key

_NAT_TARGET = {"dnat": DNAT, "snat": SNAT, "masquerade": MASQUERADE, "redirect": REDIRECT}
_ORDER = {"RPT-PREROUTING": 0, "RPT-OUTPUT": 1, "RPT-POSTROUTING": 2}
# the chains where a DNAT/REDIRECT decides where a new connection to the device goes
_EXEMPT = ("RPT-PREROUTING", "RPT-OUTPUT")


def nat_table(
    rulesets: list[RuleSet],
    family: int,
    resolver: Resolver,
    expander: Expander,
    infos: dict[str, RuleInfo],
    exempt: Sequence[IRRule] = (),
    zones: Mapping[str, Zone] | None = None,
) -> Table:
    """The nat table of one family; where each rule came from goes to `infos`. `exempt`
    (management traffic) opens `RPT-PREROUTING` and `RPT-OUTPUT`, before any NAT rule."""
    table = Table(family, "nat")
    seen: set[str] = set()
    for rs in rulesets:
        if rs.name in seen:
            continue
        seen.add(rs.name)
        for index, nat in enumerate(rs.nat):
            if not nat.enabled:
                continue
            rule_id = nat.id or fallback_rule_id(rs.name, "nat", index)
            infos[rule_id] = RuleInfo(rs.name, index + 1, nat.comment, "nat")
            fm = nat_match(nat, family, resolver)
            if fm is None:
                continue
            builtin = nat.chain.upper()
            main = f"RPT-{builtin}"
            if main not in table.chains:
                table.chains[main] = Chain(main, list(exempt) if main in _EXEMPT else [])
                table.jumps[builtin] = [IRRule(JUMP, "rpt:jump", arg=main)]
            target = _NAT_TARGET[nat.type]
            if nat.in_zone is None and nat.out_zone is None:
                tag = f"rpt:{rule_id}:{short_hash(repr(nat))}"
                base = (nat.in_interface, nat.out_interface, None, None, None)
                table.chains[main].rules.extend(
                    expander.expand(fm, base, target, tag, rule_id, nat.to)
                )
                continue
            known = zones or {}
            key = zone_key(known, nat.in_zone, nat.out_zone)
            tag = f"rpt:{rule_id}:{short_hash(repr((nat, key)))}"
            for in_if, out_if in interface_pairs(
                known, nat.in_interface, nat.out_interface, nat.in_zone, nat.out_zone
            ):
                base = (in_if, out_if, None, None, None)
                table.chains[main].rules.extend(
                    expander.expand(fm, base, target, tag, rule_id, nat.to)
                )
    table.chains = dict(sorted(table.chains.items(), key=lambda kv: _ORDER[kv[0]]))
    return table


def nat_match(nat: NatRule, family: int, resolver: Resolver) -> FamilyMatch | None:
    """What the NAT rule matches in `family`; None if it has no part in that family."""
    src = resolver.addresses(nat.sources) if nat.sources else None
    dst = resolver.addresses(nat.destinations) if nat.destinations else None
    target_fam = parse_nat_target(nat.to)[0].version if nat.to and nat.type != "redirect" else None
    if (
        (src is not None and family not in src)
        or (dst is not None and family not in dst)
        or target_fam not in (None, family)
    ):
        return None
    if nat.protocol == ("icmpv6" if family == 4 else "icmp"):
        return None
    proto = None if nat.protocol in (None, "any") else nat.protocol
    dports = merge_ports([parse_port(p) for p in nat.dports]) if nat.dports else None
    fm = FamilyMatch(
        family,
        src[family] if src else None,
        False,
        dst[family] if dst else None,
        False,
        (ProtoSpec(proto, dports),),
    )
    if nat.in_zone is None and nat.out_zone is None:
        return fm
    zone_src, zone_dst = resolver.zone_networks(nat.in_zone, nat.out_zone)
    if zone_src is None and zone_dst is None:
        return fm
    narrowed = narrow_to_zones([fm], zone_src, zone_dst)
    return narrowed[0] if narrowed else None
