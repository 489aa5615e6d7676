"""Two iptables matches as one: what a packet must satisfy to pass a jump's matches and
then an inlined rule's (pure: no Django).

`combine` answers a Match, NEVER when no packet can match both, or None when the policy
document cannot express the combination.
"""

from __future__ import annotations

import copy
import ipaddress

from compiler import values as V

from .dumps import Match

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
        elif a_neg or b_neg or len(a) != 1 or len(b) != 1:
            return None
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
    """One rate limit at most; conntrack states both sides allow."""
    if outer.rate_limit and inner.rate_limit:
        return None
    if inner.rate_limit:
        out.rate_limit, out.burst = inner.rate_limit, inner.burst
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
