"""Two iptables matches as one: what a packet must satisfy to pass a jump's matches and
then an inlined rule's (pure: no Django).

`combine` answers a Match, NEVER when no packet can match both, or None when the policy
document cannot express the combination.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import replace

from compiler import values as V

from .dumps import STATES, Match

NEVER = "never"


def _ranges(ports: tuple[str, ...]) -> list[tuple[int, int]]:
    return [V.parse_port(p) for p in ports]


def _combine_ports(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    both = [
        (max(x[0], y[0]), min(x[1], y[1]))
        for x in _ranges(a)
        for y in _ranges(b)
        if max(x[0], y[0]) <= min(x[1], y[1])
    ]
    return tuple(V.format_port(r) for r in sorted(set(both)))


def _combine_address(a: str, b: str) -> str | None:
    """The intersection of two literals when it is one of them; NEVER if disjoint."""
    if a.startswith("@set:") or b.startswith("@set:") or "-" in a or "-" in b:
        return None
    na, nb = ipaddress.ip_network(a), ipaddress.ip_network(b)
    if na.version != nb.version or not na.overlaps(nb):
        return NEVER
    return a if na.subnet_of(nb) else b  # type: ignore[arg-type]  # same version: checked


def _address_outside(kept: str, excluded: str) -> str | None:
    """`kept` and not `excluded`: `kept` when they are disjoint, NEVER when `kept` lies
    inside `excluded`, None (not expressible as one literal) otherwise."""
    if any(x.startswith("@set:") or "-" in x for x in (kept, excluded)):
        return None
    nk, ne = ipaddress.ip_network(kept), ipaddress.ip_network(excluded)
    if nk.version != ne.version or not nk.overlaps(ne):
        return kept
    return NEVER if nk.subnet_of(ne) else None  # type: ignore[arg-type]  # same version


def negated(m: Match) -> Match | None:
    """The packets `m` does not match, when the document can say it: one source or one
    destination (negated or not), or conntrack states (the other states); else None."""
    if m.states is not None and replace(m, states=None).is_empty():
        return Match(states=frozenset(s.lower() for s in STATES) - m.states)
    for side in ("sources", "destinations"):
        refs = getattr(m, side)
        if len(refs) == 1 and replace(m, **{side: (), f"{side}_negate": False}).is_empty():
            return replace(
                Match(), **{side: refs, f"{side}_negate": not getattr(m, f"{side}_negate")}
            )
    return None


def _combine_scalars(outer: Match, inner: Match, out: Match) -> Match | str | None:
    """Protocol, ICMP type and interfaces: equal or set on one side only."""
    for name in ("protocol", "icmp_type", "in_interface", "out_interface"):
        a, b = getattr(outer, name), getattr(inner, name)
        if a and b and a != b:
            if name.endswith("interface") and (a.endswith("+") or b.endswith("+")):
                return None
            return NEVER
        setattr(out, name, a or b)
    return out


def _combine_sides(outer: Match, inner: Match, out: Match) -> Match | str | None:
    """Sources and destinations: one literal inside the other, or equal, or on one side."""
    for name in ("sources", "destinations"):
        a, b = getattr(outer, name), getattr(inner, name)
        a_neg, b_neg = getattr(outer, f"{name}_negate"), getattr(inner, f"{name}_negate")
        if not (a and b):
            setattr(out, name, a or b)
            setattr(out, f"{name}_negate", a_neg if a else b_neg)
        elif (a, a_neg) == (b, b_neg):
            continue
        elif len(a) != 1 or len(b) != 1 or (a_neg and b_neg):
            return None
        elif a_neg or b_neg:
            kept = _address_outside(b[0] if a_neg else a[0], a[0] if a_neg else b[0])
            if kept is None or kept == NEVER:
                return kept
            setattr(out, name, (kept,))
            setattr(out, f"{name}_negate", False)
        else:
            both = _combine_address(a[0], b[0])
            if both is None or both == NEVER:
                return both
            setattr(out, name, (both,))
    return out


def _combine_port_lists(outer: Match, inner: Match, out: Match) -> Match | str | None:
    """Destination and source ports: the ranges both sides allow."""
    for name in ("dports", "sports"):
        a, b = getattr(outer, name), getattr(inner, name)
        if a and b:
            both = _combine_ports(a, b)
            if not both:
                return NEVER
            setattr(out, name, both)
        else:
            setattr(out, name, a or b)
    return out


def _combine_limit_states(outer: Match, inner: Match, out: Match) -> Match | str | None:
    """One rate limit (and one per-source limit) at most; conntrack states both sides
    allow."""
    if outer.rate_limit and inner.rate_limit:
        return None
    if inner.rate_limit:
        out.rate_limit, out.burst = inner.rate_limit, inner.burst
    if outer.per_source and inner.per_source:
        return None
    if inner.per_source:
        out.per_source = inner.per_source
    if inner.states is not None:
        out.states = inner.states if outer.states is None else outer.states & inner.states
    if out.states is not None and not out.states:
        return NEVER
    return out


_COMBINE_STEPS = (_combine_scalars, _combine_sides, _combine_port_lists, _combine_limit_states)


def combine(outer: Match, inner: Match) -> Match | str | None:
    """Both matches at once: a Match, NEVER (no packet matches both), or None when the
    document cannot say it (e.g. two different rate limits)."""
    out = copy.copy(outer)
    for step in _COMBINE_STEPS:
        result = step(outer, inner, out)
        if result is not out:
            return result
    return out
