"""Rule tags: the comment on every kernel rule that says which policy rule it comes from
and what that rule said, so the agent recognises its own rules and their changes."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from operator import itemgetter

from ..document import Rule, Zone
from .zones import zone_key


def rule_tag(rule_id: str, rule: Rule, zones: tuple = ()) -> str:
    """`rpt:<uuid>:<8 hex>`; the hash covers what the rule says (not its comment or id),
    and `zones` (lower.zones.zone_key) for a rule with zones."""
    key: tuple = (
        rule.chain,
        rule.action,
        rule.sources,
        rule.destinations,
        rule.services,
        rule.protocol,
        rule.dports,
        rule.sports,
        rule.sources_negate,
        rule.destinations_negate,
        rule.in_interface,
        rule.out_interface,
        rule.states,
        rule.log,
        rule.log_prefix,
        rule.rate_limit,
        rule.burst,
        rule.icmp_type,
    )
    if rule.reject_with is not None:  # appended only when set: older rules keep their tags
        key += (rule.reject_with,)
    if zones:  # likewise only for rules with zones
        key += (zones,)
    if rule.rate_limit_per_source is not None:  # likewise
        key += (tuple(rule.rate_limit_per_source),)
    return f"rpt:{rule_id}:{zlib.crc32(repr(key).encode()):08x}"


def rule_tagger(zones: Mapping[str, Zone] | None = None) -> Callable[[str, Rule], str]:
    """`rule_tag` for many rules: the same value, but the repr of the fields that rarely
    differ between rules is written once per distinct combination, not once per rule.

    The repr of a tuple is "(" + ", ".join(repr(item)) + ")", so the key's repr is rebuilt
    from a cached head, middle and tail around the reprs of sources, destinations, dports.
    """
    shapes: dict[tuple, tuple[str, str, str]] = {}
    crc32 = zlib.crc32
    # (chain, action, services, protocol, sports, sources_negate, destinations_negate,
    # in_interface, out_interface, states, log, log_prefix, rate_limit, burst, icmp_type)
    # and (sources, destinations, dports), picked from the Rule tuple in C
    shape_of = itemgetter(
        *(
            Rule._fields.index(f)
            for f in (
                "chain",
                "action",
                "services",
                "protocol",
                "sports",
                "sources_negate",
                "destinations_negate",
                "in_interface",
                "out_interface",
                "states",
                "log",
                "log_prefix",
                "rate_limit",
                "burst",
                "icmp_type",
            )
        )
    )
    varying = itemgetter(*(Rule._fields.index(f) for f in ("sources", "destinations", "dports")))

    def tag(rule_id: str, rule: Rule) -> str:
        in_zone, out_zone = rule.in_zone, rule.out_zone
        if in_zone is not None or out_zone is not None:  # rare: the key covers the zones
            return rule_tag(rule_id, rule, zone_key(zones or {}, in_zone, out_zone))
        if rule.reject_with is not None or rule.rate_limit_per_source is not None:
            return rule_tag(rule_id, rule)  # rare: the key has one more field
        shape = shape_of(rule)
        parts = shapes.get(shape)
        if parts is None:
            r = [repr(x) for x in shape]
            parts = shapes[shape] = (
                f"({r[0]}, {r[1]}, ",
                f", {r[2]}, {r[3]}, ",
                f", {', '.join(r[4:])})",
            )
        sources, destinations, dports = varying(rule)
        text = f"{parts[0]}{sources!r}, {destinations!r}{parts[1]}{dports!r}{parts[2]}"
        return f"rpt:{rule_id}:{crc32(text.encode()):08x}"

    return tag
