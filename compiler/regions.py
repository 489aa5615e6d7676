"""Rules as regions: the exact set arithmetic under the analysis.

A rule is a union of boxes in the space source × destination × protocol × source port ×
destination port × ICMP type × in-interface × out-interface × conntrack state (per address
family and chain). Addresses and ports are integer intervals, so 198.18.0.0/24 covers
198.18.0.7 by arithmetic, never by comparing strings. Interfaces become a finite set of
representative names (every exact name used, one name per wildcard, one for "anything
else"), which is exact for the patterns the rules use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .resolve import FamilyMatch
from .tracer import iface_matches

Intervals = tuple[tuple[int, int], ...]
Box = tuple  # (src, dst, proto, sport, dport, icmp, in_if, out_if, states)

_PROTO_NUM = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
_FULL_ADDR = {4: ((0, 2**32 - 1),), 6: ((0, 2**128 - 1),)}
_FULL_PROTO = ((0, 255),)
_FULL_PORT = ((0, 65535),)
_FULL_ICMP = ((0, 255),)
_PLAIN = ("new", "established", "related", "invalid", "untracked")
# a packet's state and whether its connection was DNAT'ed: `dnat` is every state of
# those (a rule's `states: [dnat]`), a plain state both with and without it
_DNAT = frozenset(f"{s}+dnat" for s in _PLAIN)
STATES = frozenset(_PLAIN) | _DNAT
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


def _ifaces(pattern: str | tuple[str, ...] | None, reps: frozenset[str]) -> frozenset[str]:
    """The representatives `pattern` matches (a tuple: a zone's interfaces, any of them)."""
    if pattern is None:
        return reps
    if isinstance(pattern, tuple):
        return frozenset(r for r in reps if any(iface_matches(p, r) for p in pattern))
    return frozenset(r for r in reps if iface_matches(pattern, r))


def interface_reps(patterns: set[str]) -> frozenset[str]:
    reps = {"~"}
    for p in patterns:
        reps.add(p[:-1] + "~" if p.endswith("+") else p)
    return frozenset(reps)


def fm_region(
    fm: FamilyMatch,
    in_if: str | tuple[str, ...] | None,
    out_if: str | tuple[str, ...] | None,
    states: tuple[str, ...],
    reps: tuple[frozenset, frozenset],
) -> list[Box]:
    src = _addr(fm.family, fm.src, fm.src_negate)
    dst = _addr(fm.family, fm.dst, fm.dst_negate)
    ins, outs = _ifaces(in_if, reps[0]), _ifaces(out_if, reps[1])
    sts = (
        frozenset(x for s in states for x in ((s, f"{s}+dnat") if s != "dnat" else _DNAT))
        if states
        else STATES
    )
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
