"""Large lookup sets cut in parts (blocks.py, `BlockCompiler._emit`).

Neither ipset nor nft reads one element's counters cheaply: a change that deletes an
element (its rule edited, moved or removed) lists the whole set first for the counts it
loses, ~10 us per element here. Parts keep that bounded (`CompileOptions.set_elements_max`).

A set whose elements carry destination ports is cut by port: per protocol the port space is
halved, again and again, until each cell holds few enough elements, and each cell becomes a
rule `-p <proto> --dport <cell> -m set --match-set <its part>`. A packet then meets one
cheap port comparison per part and ONE lookup (a lookup costs about as much as 40 port
comparisons here), so parts cost the packet path almost nothing. An element whose port
range crosses a cell edge is split there (both pieces carry its rule's tag; counters are
summed per rule). Cells depend on how many elements fall in them, not on which: a rule
added or removed changes the elements of its cell only, until a cell crosses the limit.
A set without ports (or one cell too full to halve: a single port) is cut by a hash of
the rule id instead, into 2, 4, 8... parts, each a lookup.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import replace

from ..ir import LookupSet, PortElem, SetElement
from ..ir import Rule as IRRule

PORT_TOP = 65535
_new_tuple = tuple.__new__


def _total(elements: list[SetElement], i: int, intervals: bool, limit: int | None = None) -> int:
    """The kernel elements of `elements` (ipset stores a port range port by port; nft one
    interval each); with `limit`, counting stops as soon as the sum is past it (`_split`
    asks only whether a cell is within its limit, once per level of halving: counting a
    large set to its end each time was most of its work)."""
    if intervals:
        return len(elements)
    total = 0
    for e in elements:
        port = e.values[i]
        total += port.hi - port.lo + 1
        if limit is not None and total > limit:
            break
    return total


def _split(
    elements: list[SetElement], i: int, lo: int, hi: int, limit: int, intervals: bool
) -> list[tuple[int, int, list[SetElement]]]:
    """The port cells of [lo, hi] (halved while a cell holds more than `limit` kernel
    elements), each with its elements, pieces cut at the cell edges."""
    if hi == lo or _total(elements, i, intervals, limit) <= limit:
        return [(lo, hi, elements)] if elements else []
    mid = (lo + hi) // 2
    left: list[SetElement] = []
    right: list[SetElement] = []
    for e in elements:
        port = e.values[i]
        if port.hi <= mid:
            left.append(e)
        elif port.lo > mid:
            right.append(e)
        else:  # across the edge: one piece on each side, the same rule
            values = e.values
            low = _new_tuple(PortElem, (port.proto, port.lo, mid))
            high = _new_tuple(PortElem, (port.proto, mid + 1, port.hi))
            left.append(
                _new_tuple(SetElement, ((*values[:i], low, *values[i + 1 :]), e.tag, e.rule_id))
            )
            right.append(
                _new_tuple(SetElement, ((*values[:i], high, *values[i + 1 :]), e.tag, e.rule_id))
            )
    if 2 * (len(left) + len(right) - len(elements)) > limit:
        # too many elements span the edge (each would be a piece on both sides, in every
        # cell further down): this cell is cut by rule instead
        return [(lo, hi, elements)]
    return [
        *_split(left, i, lo, mid, limit, intervals),
        *_split(right, i, mid + 1, hi, limit, intervals),
    ]


def _hashed(elements: list[SetElement], size: int, limit: int) -> list[list[SetElement]]:
    """2, 4, 8... parts by a hash of the rule id (a rule stays in its part while the part
    count stays)."""
    count = 2
    while size > count * limit:
        count *= 2
    parts: list[list[SetElement]] = [[] for _ in range(count)]
    for element in elements:
        parts[zlib.crc32(element.rule_id.encode()) % count].append(element)
    return parts


def cut(
    rule: IRRule, group: str, limit: int, intervals: bool, name_of: Callable[[str], str]
) -> list[IRRule]:
    """`rule` (a set-lookup rule) as the rules of its set's parts, or [rule] if its set
    holds at most `limit` kernel elements. `name_of(key)` names a part's set from its
    group and cell."""
    lset = rule.lookup
    assert lset is not None
    size = len(lset.elements) if intervals else lset.size
    if size <= limit:
        return [rule]

    def part(elements: list[SetElement], key: str, proto: str | None = None, dports=None) -> IRRule:
        piece = LookupSet(name_of(f"{group}/{key}"), lset.family, lset.shape, elements)
        return replace(
            rule,
            tag=f"rpt:sys:set:{piece.name}",
            lookup=piece,
            proto=proto or rule.proto,
            dports=dports or rule.dports,
        )

    if "dport" not in lset.dims or rule.dports is not None:
        parts = _hashed(lset.elements, size, limit)
        return [part(p, f"{k}of{len(parts)}") for k, p in enumerate(parts) if p]
    i = lset.dims.index("dport")
    by_proto: dict[str, list[SetElement]] = {}
    for element in lset.elements:
        by_proto.setdefault(element.values[i].proto, []).append(element)
    out: list[IRRule] = []
    for proto in sorted(by_proto):
        for lo, hi, elements in _split(by_proto[proto], i, 0, PORT_TOP, limit, intervals):
            weight = _total(elements, i, intervals)
            pieces = _hashed(elements, weight, limit) if weight > limit else [elements]
            for k, piece in enumerate(pieces):
                if piece:
                    key = f"{proto}/{lo}-{hi}" + (f"/{k}of{len(pieces)}" if len(pieces) > 1 else "")
                    out.append(part(piece, key, proto=proto, dports=((lo, hi),)))
    return out
