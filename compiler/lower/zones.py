"""Zones in kernel rules: a rule with `in_zone`/`out_zone` becomes one kernel rule per
interface of the zone (per pair when both sides have one), in the place of the rule.

Copies rather than a jump to a chain per zone: zones have a handful of interfaces, each
copy is one more interface comparison on the same path a jump would take, and the rule
keeps its place in its rule set's chain, so first-match order is unchanged. The copies
share the rule's tag, so counters, drift and hits stay per policy rule.
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
    """What a rule's tag must also cover: its zones and their interfaces (a zone's new
    interface changes the rule's kernel rules, so it changes the tag)."""
    return tuple(
        (name, zones[name].interfaces if name is not None else ()) for name in (in_zone, out_zone)
    )
