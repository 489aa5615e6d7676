"""Zones in kernel rules: a rule with `in_zone`/`out_zone` becomes one kernel rule per
interface of the zone (per pair when both sides have one), in the place of the rule.

Copies rather than a jump to a chain per zone: zones have a handful of interfaces, each
copy is one more interface comparison on the same path a jump would take, and the rule
keeps its place in its rule set's chain, so first-match order is unchanged. The copies
share the rule's tag, so counters, drift and hits stay per policy rule.

A zone's `networks` do not appear here: the resolver narrows the rule's sources (in_zone)
or destinations (out_zone) to them (resolve.Resolver.rule), so the kernel rules, the
analysis and the tracer all see the narrowed addresses.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..document import Zone


def interface_pairs(
    zones: Mapping[str, Zone],
    in_iface: str | None,
    out_iface: str | None,
    in_zone: str | None,
    out_zone: str | None,
) -> list[tuple[str | None, str | None]]:
    """The (in, out) interfaces the rule's kernel rules match, in zone order."""
    ins = zones[in_zone].interfaces if in_zone is not None else (in_iface,)
    outs = zones[out_zone].interfaces if out_zone is not None else (out_iface,)
    return [(i, o) for i in ins for o in outs]


def zone_key(zones: Mapping[str, Zone], in_zone: str | None, out_zone: str | None) -> tuple:
    """What a rule's tag must also cover: its zones, their interfaces and networks (a zone's
    new interface or network changes the rule's kernel rules, so it changes the tag)."""
    return tuple(_zone_part(zones, name) for name in (in_zone, out_zone))


def _zone_part(zones: Mapping[str, Zone], name: str | None) -> tuple:
    if name is None:
        return (name, ())
    zone = zones[name]
    # networks only when listed: a zone without them keeps the tags it always had
    return (name, zone.interfaces, zone.networks) if zone.networks else (name, zone.interfaces)
