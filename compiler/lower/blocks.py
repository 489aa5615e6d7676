"""Set-compiled rule runs: a rule-set chain's rules as blocks of set lookups.

First match makes order matter only between rules that can match the same packet. The
chain's policy rules (the consecutive kernel rules of one rule id) are cut, in order, into
blocks of pairwise disjoint rules: no packet matches two rules of one block, so inside a
block neither the verdict nor which rule matched depends on order. Per (target, reject
type, shape) the block's rules then become one `-m set --match-set` rule whose set holds
their elements, each tagged with its own rule (docs/compiler.md, "Set-compiled rule runs").

Disjointness is tested on a box per kernel rule (source and destination interval,
protocol, destination ports) that ignores what else the rule matches (interfaces, states,
source ports...): a superset of what it matches, so a conflict is never missed, only
sometimes assumed. A new rule that overlaps any rule of the current block starts the next
block. Rules a set cannot express stay kernel rules, in their place within their block.
A rule whose port range is too wide for elements (ipset: one per port) keeps its ports in
the set rule and only its addresses go to the set, grouped by its exact port list (`_wide`).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..ir import (
    ACCEPT,
    DROP,
    JUMP,
    REJECT,
    SET_MAX,
    SET_PREFIX,
    SHAPES,
    AddrMatch,
    Chain,
    IpSet,
    LookupSet,
    PortElem,
    Program,
    SetElement,
)
from ..ir import Rule as IRRule
from ..nets import Net, collapse
from .names import set_name, short_hash
from .segments import segment_chain
from .set_parts import cut

# a rule whose elements (port ranges expanded) exceed this stays a kernel rule
RULE_MAX_ELEMENTS = 4096
# a rule of more boxes than this is taken to overlap everything (it gets a block of its own)
RULE_MAX_BOXES = 4096
# more candidates than this for one overlap test: the rules are taken to overlap
CANDIDATES_MAX = 2048
# a guard chain of more policy rules of one protocol than this is cut by port (`_tree`):
# a packet then meets at most 8 jumps per level of the tree and one leaf of at most 32
LEAF_MAX = 32
TREE_FANOUT = 8
_BITS = {4: 32, 6: 128}
_VERDICTS = (ACCEPT, DROP, REJECT)
# every address, as a set element's side (nftables interval sets, `BlockCompiler.intervals`)
_WHOLE = {4: Net(4, 0, 0), 6: Net(6, 0, 0)}

# (s_first, s_last, s_plen, d_first, d_last, d_plen, proto, ports)
Box = tuple
# a chain a block's guard made, with the address set of its guard rule (see `_guard`;
# None for the chains below the guarded one, `_tree`)
Guard = tuple[Chain, IpSet | None]
# what a chain's level pass leaves for the next compile of it: per policy rule (rule id,
# its first kernel rule, how many), each level's kernel rules and the chains its guard
# made, per policy rule its boxes, port keys and plan, and per level its rules' indexes
Blocks = tuple[list[tuple], list[list[IRRule]], list[list[Guard]], list[tuple], list[list[int]]]
# NamedTuple instances without the Python-level __new__ (hot loop; as in rulesets.py)
_new_tuple = tuple.__new__


def set_rule_members(rule: IRRule) -> list[str]:
    """The policy rule ids a set-lookup rule stands for, in the order of their elements
    (preview and analysis explain a set rule as these rules); [] for any other rule."""
    if rule.lookup is None:
        return []
    return list(dict.fromkeys(e.rule_id for e in rule.lookup.elements))


def lookup_members(program: Program) -> dict[str, list[str]]:
    """Per set of a set-lookup rule, the policy rule ids it stands for (preview)."""
    return {
        name: list(dict.fromkeys(e.rule_id for e in lset.elements))
        for name, lset in program.lookups.items()
    }


def lookup_set_name(family: int, shape: str, key: str) -> str:
    """`rpt-<family><shape>-<16 hex>`: named by the block (rule set, chain, its first rule)
    and the group, so adding or removing another rule of the block changes elements only."""
    name = f"{SET_PREFIX}{family}{shape}-{short_hash(key, 8)}"
    assert len(name) <= SET_MAX
    return name


def _settable(r: IRRule) -> bool:
    """What a set element can say: addresses (not negated), tcp/udp destination ports."""
    return (
        r.target in _VERDICTS
        and r.lookup is None
        and r.in_iface is None
        and r.out_iface is None
        and r.sports is None
        and r.icmp_type is None
        and r.states is None
        and r.limit is None
        and r.until is None
        and r.hop_limit is None
        and r.dst_type is None
        and r.per_source is None
        and (r.proto is None or ((r.proto == "tcp" or r.proto == "udp") and r.dports is not None))
        and (r.src is None or not r.src.negate)
        and (r.dst is None or not r.dst.negate)
    )


def _nets(m) -> tuple[Net, ...] | None:
    """The networks of one side; None when it is every address (absent, or a /0)."""
    if m is None:
        return None
    nets = m.nets
    if len(nets) == 1 and nets[0].plen == 0:
        return None
    return nets


def _shape(
    srcs: tuple[Net, ...] | None, dsts: tuple[Net, ...] | None, ports: bool, types: frozenset
) -> str | None:
    """The set shape for these sides on a device with ipset `types` (None: no shape fits)."""
    if not ports:
        if srcs is None and dsts is None:
            return None
        if srcs is None or dsts is None:
            return ("s" if dsts is None else "d") if "hash:net" in types else None
        return "sd" if "hash:net,net" in types else None
    if srcs is None and dsts is None:
        return None
    if srcs is None or dsts is None:
        return ("sp" if dsts is None else "dp") if "hash:net,port" in types else None
    if "hash:net,port,net" in types:
        return "spd"
    bits = _BITS[srcs[0].version]
    dst_hosts = all(n.plen == bits for n in dsts)
    src_hosts = all(n.plen == bits for n in srcs)
    if "hash:ip,port,net" in types:
        if dst_hosts:
            return "hps"
        if src_hosts:
            return "hpd"
    if dst_hosts and src_hosts and "hash:ip,port,ip" in types:
        return "hph"
    return None


def _values(shape: str, srcs, dsts, proto, dports) -> list[tuple]:
    """Every element's values of one kernel rule, in the shape's dimension order."""
    if shape == "sp" or shape == "dp":  # the frequent shapes, without the general loop
        nets = srcs if shape == "sp" else dsts
        if len(nets) == 1 and len(dports) == 1:
            return [(nets[0], _new_tuple(PortElem, (proto, *dports[0])))]
        ports = [_new_tuple(PortElem, (proto, lo, hi)) for lo, hi in dports]
        return [(n, p) for n in nets for p in ports]
    if shape == "s" or shape == "d":  # addresses only (`_wide`: ports in the rule)
        return [(n,) for n in (srcs if shape == "s" else dsts)]
    if shape == "spd" and len(srcs) == 1 and len(dsts) == 1:  # nft's one shape, likewise
        s, d = srcs[0], dsts[0]
        return [(s, _new_tuple(PortElem, (proto, lo, hi)), d) for lo, hi in dports]
    side = {"src": srcs, "dst": dsts}
    out: list[tuple] = [()]
    for dim in _DIMS[shape]:
        if dim == "dport":
            opts: Iterable = [_new_tuple(PortElem, (proto, lo, hi)) for lo, hi in dports]
        else:
            opts = side[dim]
        out = [v + (o,) for v in out for o in opts]
    return out


_DIMS = {shape: dims for shape, (_, dims) in SHAPES.items()}


def _wide(r: IRRule, srcs, dsts, types: frozenset) -> tuple[tuple, list[tuple]] | None:
    """Ports in the rule, addresses in the set, for a kernel rule with a port range too
    wide for set elements: its group key also holds its protocol and exact port list (the
    set rule matches them itself, `-p tcp -m multiport --dports ...`), the elements only
    its addresses. None when it names no address, or no set type holds both sides."""
    shape = _shape(srcs, dsts, False, types)
    if shape is None:
        return None
    return (r.target, r.arg, shape, r.proto, r.dports), _values(shape, srcs, dsts, None, ())


def _boxes(irs: list[IRRule], family: int) -> list[Box]:
    """Boxes covering what the kernel rules can match (a superset; see the module doc)."""
    bits = _BITS[family]
    top = (1 << bits) - 1
    whole = ((0, top, 0),)
    out: list[Box] = []
    for r in irs:
        s_count = 1 if r.src is None or r.src.negate else len(r.src.nets)
        d_count = 1 if r.dst is None or r.dst.negate else len(r.dst.nets)
        if s_count * d_count + len(out) > RULE_MAX_BOXES:
            return [(0, top, 0, 0, top, 0, None, None)]
        s_side = (
            whole
            if r.src is None or r.src.negate
            else [(n.first, n.last, n.plen) for n in r.src.nets]
        )
        d_side = (
            whole
            if r.dst is None or r.dst.negate
            else [(n.first, n.last, n.plen) for n in r.dst.nets]
        )
        proto = r.proto
        ports = r.dports if proto is not None else None
        for s in s_side:
            for d in d_side:
                out.append((s[0], s[1], s[2], d[0], d[1], d[2], proto, ports))
    return out


def _overlap(a: Box, b: Box) -> bool:
    if a[0] > b[1] or b[0] > a[1] or a[3] > b[4] or b[3] > a[4]:
        return False
    pa, pb = a[6], b[6]
    if pa is None or pb is None:
        return True
    if pa != pb:
        return False
    ra, rb = a[7], b[7]
    if ra is None or rb is None:
        return True
    return any(lo <= h2 and l2 <= hi for lo, hi in ra for l2, h2 in rb)


# the port index: buckets of 64 ports per protocol; a box over more buckets is "wild"
_PORT_SHIFT = 6
_PORT_BUCKETS_MAX = 16
# a level's boxes whose source prefix is at least this long are filed by that prefix of
# this length (their source "cell"); shorter ones are checked against every query
_CELL = {4: 24, 6: 48}


def _port_keys(box: Box) -> list[int] | None:
    """The 64-port buckets a box covers; None if it is wild (no ports, or wide)."""
    proto, ports = box[6], box[7]
    if proto is None or ports is None:
        return None
    if len(ports) == 1:
        lo, hi = ports[0]
        lo, hi = lo >> _PORT_SHIFT, hi >> _PORT_SHIFT
        if lo == hi:
            return [lo]
        return list(range(lo, hi + 1)) if hi - lo < _PORT_BUCKETS_MAX else None
    if len(ports) > _PORT_BUCKETS_MAX:
        return None
    keys: list[int] = []
    for lo, hi in ports:
        lo, hi = lo >> _PORT_SHIFT, hi >> _PORT_SHIFT
        keys.extend(range(lo, hi + 1))
        if len(keys) > _PORT_BUCKETS_MAX:
            return None
    return keys


def _file(index: dict, key: object, box: Box) -> None:
    found = index.get(key)
    if found is None:
        index[key] = [box]
    else:
        found.append(box)


class _Index:
    """The boxes of one protocol (of no protocol: those that name none), filed so that an
    overlap test reads only the boxes that share a port bucket or source cell.

    A box is "keyed" (it has port buckets) or "wild", and has a source cell or a short
    source (`cell` None). Candidates for a query box: keyed and cell, the boxes of its
    buckets in its cell, the short-source ones of its buckets and the wild ones of its
    cell or a short source; keyed and short, every box of its buckets and every wild box;
    wild and cell, every box of its cell and every short-source box; else every box. The
    indexes only the last three read are built on their first need.
    """

    __slots__ = ("cells", "port_short", "wild_cell", "wild_short", "items", "_port", "_cell")

    def __init__(self) -> None:
        # keyed boxes with a cell: per cell, per port bucket (ints hash cheaper than pairs)
        self.cells: dict[int, dict[int, list[Box]]] = {}
        self.port_short: dict[int, list[Box]] = {}
        self.wild_cell: dict[int, list[Box]] = {}
        self.wild_short: list[Box] = []
        self.items: list[tuple[Box, list[int] | None, int | None]] = []
        # built on first need, then kept: per bucket every keyed box, and every wild box;
        # per cell every box, and every short-source box
        self._port: tuple[dict[int, list[Box]], list[Box]] | None = None
        self._cell: tuple[dict[int, list[Box]], list[Box]] | None = None

    def add(self, box: Box, keys: list[int] | None, cell: int | None) -> None:
        self.items.append((box, keys, cell))
        if keys is None:
            if cell is None:
                self.wild_short.append(box)
            else:
                _file(self.wild_cell, cell, box)
        elif cell is None:
            for key in keys:
                _file(self.port_short, key, box)
        else:
            by_key = self.cells.get(cell)
            if by_key is None:
                by_key = self.cells[cell] = {}
            for key in keys:  # `_file`, inline: once per key of nearly every rule
                boxes = by_key.get(key)
                if boxes is None:
                    by_key[key] = [box]
                else:
                    boxes.append(box)
        if self._port is not None:
            self._file_port(self._port, box, keys)
        if self._cell is not None:
            self._file_cell(self._cell, box, cell)

    @staticmethod
    def _file_port(port: tuple[dict, list], box: Box, keys: list[int] | None) -> None:
        if keys is None:
            port[1].append(box)
        else:
            for key in keys:
                _file(port[0], key, box)

    @staticmethod
    def _file_cell(by_cell: tuple[dict, list], box: Box, cell: int | None) -> None:
        if cell is None:
            by_cell[1].append(box)
        else:
            _file(by_cell[0], cell, box)

    def _port_index(self) -> tuple[dict[int, list[Box]], list[Box]]:
        """Every box so far by port bucket, and the wild ones (`_file_port` for each, in
        one loop: a single query of a short source, such as a rule of no source at the
        end of a large policy, builds it over every box)."""
        by_key: dict[int, list[Box]] = {}
        wild: list[Box] = []
        for box, box_keys, _ in self.items:
            if box_keys is None:
                wild.append(box)
                continue
            for key in box_keys:
                found = by_key.get(key)
                if found is None:
                    by_key[key] = [box]
                else:
                    found.append(box)
        return by_key, wild

    def candidates(self, keys: list[int] | None, cell: int | None, out: list) -> None:
        """Append to `out` lists holding every box that may overlap such a box."""
        if keys is not None and cell is not None:  # the frequent query: only what is there
            by_key, short = self.cells.get(cell), self.port_short
            for key in keys:
                if by_key is not None:
                    boxes = by_key.get(key)
                    if boxes is not None:
                        out.append(boxes)
                if short:
                    boxes = short.get(key)
                    if boxes is not None:
                        out.append(boxes)
            boxes = self.wild_cell.get(cell)
            if boxes is not None:
                out.append(boxes)
            if self.wild_short:
                out.append(self.wild_short)
        elif keys is not None:
            if self._port is None:
                self._port = self._port_index()
            get = self._port[0].get
            out.extend([get(key, ()) for key in keys])
            out.append(self._port[1])
        elif cell is not None:
            if self._cell is None:
                self._cell = ({}, [])
                for box, _, box_cell in self.items:
                    self._file_cell(self._cell, box, box_cell)
            out.append(self._cell[0].get(cell, ()))
            out.append(self._cell[1])
        else:
            out.append([box for box, _, _ in self.items])


class _Levels:
    """Every rule's boxes so far with its level (a box's 9th item), indexed for
    `level_of` by protocol (`_Index`)."""

    def __init__(self, family: int) -> None:
        self.cell_plen = _CELL[family]
        self.shift = _BITS[family] - self.cell_plen
        self.by_proto: dict[str | None, _Index] = {}
        self.top = -1

    def add(self, boxes: list[Box], box_keys: list, level: int) -> None:
        by_proto, cell_plen, shift = self.by_proto, self.cell_plen, self.shift
        for box, keys in zip(boxes, box_keys, strict=True):
            index = by_proto.get(box[6])
            if index is None:
                index = by_proto[box[6]] = _Index()
            index.add((*box, level), keys, box[0] >> shift if box[2] >= cell_plen else None)
        if level > self.top:
            self.top = level

    def place(self, boxes: list[Box], box_keys: list) -> int:
        """`level_of`, then `add` at that level; the level. One box of a protocol with port
        buckets and a source cell (nearly every rule of a large policy) takes `_place_one`,
        the same in one pass without the general loops."""
        if len(boxes) == 1:
            box, keys = boxes[0], box_keys[0]
            if keys is not None and box[6] is not None and box[2] >= self.cell_plen:
                return self._place_one(box, keys)
        at = self.level_of(boxes, box_keys)
        self.add(boxes, box_keys, at)
        return at

    def _place_one(self, box: Box, keys: list[int]) -> int:
        """`place` for one keyed box with a source cell (what `level_of` and `add` do)."""
        by_proto = self.by_proto
        index = by_proto.get(box[6])
        if index is None:
            index = by_proto[box[6]] = _Index()
        cell = box[0] >> self.shift
        found: list = []
        index.candidates(keys, cell, found)
        protoless = by_proto.get(None)
        if protoless is not None:
            protoless.candidates(keys, cell, found)
        at = 0
        if sum(map(len, found)) > CANDIDATES_MAX:
            at = self.top + 1
        else:
            for bucket in found:
                for other in bucket:
                    if other[8] >= at and _overlap(box, other):
                        at = other[8] + 1
        index.add((*box, at), keys, cell)
        if at > self.top:
            self.top = at
        return at

    def level_of(self, boxes: list[Box], box_keys: list) -> int:
        """The lowest level above every earlier rule that may overlap these boxes (too
        many candidates to test: above them all; a conflict is never missed, only
        sometimes assumed)."""
        by_proto, cell_plen, shift = self.by_proto, self.cell_plen, self.shift
        at = 0
        for box, keys in zip(boxes, box_keys, strict=True):
            proto = box[6]
            if proto is None:
                indexes = list(by_proto.values())
            else:
                indexes = [i for i in (by_proto.get(proto), by_proto.get(None)) if i is not None]
            found: list = []
            cell = box[0] >> shift if box[2] >= cell_plen else None
            for index in indexes:
                index.candidates(keys, cell, found)
            if sum(map(len, found)) > CANDIDATES_MAX:
                return self.top + 1
            for bucket in found:
                for other in bucket:
                    if other[8] >= at and _overlap(box, other):
                        at = other[8] + 1
        return at


def _same_level(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(map(_same, a, b))


def _same(a: tuple, b: tuple) -> bool:
    """The same policy rule with the very same kernel rules (see `BlockCompiler.compile`)."""
    return a[0] == b[0] and a[1] is b[1] and a[2] == b[2]


def _units(rules: list[IRRule]) -> list[tuple[str | None, list[IRRule]]]:
    """The kernel rules grouped per policy rule (consecutive, same rule id)."""
    units: list[tuple[str | None, list[IRRule]]] = []
    last: str | None = None
    for r in rules:
        rid = r.rule_id
        if units and rid is not None and rid == last:
            units[-1][1].append(r)
        else:
            units.append((rid, [r]))
        last = rid
    return units


class BlockCompiler:
    """Set-compiles the chains of one rule set (`compile` per chain and family)."""

    def __init__(
        self,
        ruleset: str,
        types: frozenset[str],
        min_rules: int,
        range_max: int = 64,
        guard_min: int | None = None,
        elements_max: int | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.types = types
        self.min_rules = min_rules
        self.range_max = range_max
        self.guard_min = guard_min
        # nftables interval sets (ranges are elements): any side may be a whole interval,
        # so one shape with ports and one without hold every settable rule
        self.intervals = range_max > 65535 and {"hash:net,port,net", "hash:net,net"} <= types
        self.elements_max = elements_max

    def compile(
        self,
        rules: list[IRRule],
        family: int,
        direction: str,
        earlier: Blocks | None = None,
        chain: str = "",
    ) -> tuple[list[IRRule], Blocks]:
        """The chain's rules as levels of set lookups, and what the next compile of the
        chain can reuse (`Blocks`: a chain whose rules are all the same kernel rule
        objects as last time, which rulesets.py lends, is that result again).

        Each policy rule goes to the lowest level above every earlier rule it may overlap
        (`_Levels.level_of`): the levels run in order and no two rules of one level overlap,
        so first match decides as in the linear chain, and for every packet the same rule
        decides. A level is one block (`_emit`), named by its rank: a change that keeps the
        levels changes set elements only.
        """
        units = _units(rules)
        keys = [(rid, irs[0], len(irs)) for rid, irs in units]
        known: dict[int, tuple] = {}
        if earlier is not None:
            if len(earlier[0]) == len(keys) and all(map(_same, keys, earlier[0])):
                return [r for out in earlier[1] for r in out], earlier
            # an unchanged policy rule (the very same kernel rule objects) keeps its facts
            known = {
                id(key[1]): (key, fact) for key, fact in zip(earlier[0], earlier[3], strict=True)
            }
        index = _Levels(family)
        facts: list[tuple] = []
        members: list[list[int]] = []  # per level, its policy rules' indexes
        for i, (_, irs) in enumerate(units):
            fact = self._fact(keys[i], irs, known, family)
            facts.append(fact)
            boxes, box_keys, _ = fact
            at = index.place(boxes, box_keys)
            if at == len(members):
                members.append([])
            members[at].append(i)
        outs: list[list[IRRule]] = []
        guards: list[list[Guard]] = []
        for k, level in enumerate(members):
            if (
                earlier is not None
                and k < len(earlier[4])
                and _same_level([keys[i] for i in level], [earlier[0][i] for i in earlier[4][k]])
            ):  # the very same rules as last time: the same block
                outs.append(earlier[1][k])
                guards.append(earlier[2][k])
                continue
            out, guard = self._emit(
                [units[i] for i in level],
                [facts[i][2] for i in level],
                family,
                direction,
                f"{chain}/{k}",
            )
            outs.append(out)
            guards.append(guard)
        return [r for out in outs for r in out], (keys, outs, guards, facts, members)

    def _fact(self, key: tuple, irs: list[IRRule], known: dict[int, tuple], family: int) -> tuple:
        """A policy rule's boxes, their port keys and its plan (`_plan`): as the last
        compile found them if it is the same rule, else computed."""
        rid, first, count = key
        was = known.get(id(first))
        if was is not None and _same(was[0], key):
            return was[1]
        fact = self._single(first, family) if count == 1 and rid is not None else None
        if fact is None:
            boxes = _boxes(irs, family)
            fact = (boxes, [_port_keys(b) for b in boxes], self._plan(irs, family) if rid else None)
        return fact

    def _single(self, r: IRRule, family: int) -> tuple | None:
        """`_boxes`, `_port_keys` and `_plan` at once for the frequent policy rule: one
        settable tcp/udp kernel rule with destination ports and one network a side (or no
        destination), nearly every rule of a large policy; None for any other, which the
        general functions take. Same result as they give (a property test compares)."""
        src, dst, proto, dports = r.src, r.dst, r.proto, r.dports
        if (
            src is None
            or proto is None
            or len(src.nets) != 1
            or (dst is not None and len(dst.nets) != 1)
            or not _settable(r)
        ):
            return None
        s = src.nets[0]
        if dst is None:
            d_first, d_last, d_plen = 0, (1 << _BITS[family]) - 1, 0
            dsts = None
        else:
            d = dst.nets[0]
            d_first, d_last, d_plen = d.first, d.last, d.plen
            dsts = dst.nets if d_plen else None
        box = (s.first, s.last, s.plen, d_first, d_last, d_plen, proto, dports)
        entry = self._plan_rule(r, src.nets if s.plen else None, dsts, family, RULE_MAX_ELEMENTS)
        return [box], [_port_keys(box)], None if entry is None else [entry[0]]

    def _emit(
        self,
        units: list[tuple[str | None, list[IRRule]]],
        plans: list[list[tuple[tuple, list[tuple]]] | None],
        family: int,
        direction: str,
        label: str,
    ) -> tuple[list[IRRule], list[Guard]]:
        """One block's kernel rules: per group big enough one set lookup, at the place of
        its first rule; everything else as it was, in its place (or behind a guard, see
        `_guard`). `plans`: per policy rule, its kernel rules' group keys and element
        values (None: it stays as it is); `label`: the block's chain and rank, which name
        its sets and chains."""
        members: dict[tuple, int] = {}
        for plan in plans:
            if plan is None:
                continue
            if len(plan) == 1:  # nearly every rule: one kernel rule, one group
                key = plan[0][0]
                members[key] = members.get(key, 0) + 1
            else:
                for key in {key for key, _ in plan}:
                    members[key] = members.get(key, 0) + 1
        big = {key for key, count in members.items() if count >= self.min_rules}
        if not big:
            return self._guard([r for _, irs in units for r in irs], family, direction, label)
        made: dict[tuple, list[SetElement]] = {}
        groups: dict[str, str] = {}  # set name -> its group (what names its parts)
        out: list[IRRule] = []
        for (rid, irs), plan in zip(units, plans, strict=True):
            if plan is None:
                out.extend(irs)
                continue
            # no element repeats: a block's rules are disjoint, and a rule's own elements
            # are distinct (collapsed networks, merged ports, one protocol per kernel rule)
            for r, (key, values) in zip(irs, plan, strict=True):
                if key not in big:
                    out.append(r)
                    continue
                elements = made.get(key)
                if elements is None:
                    target, arg, shape = key[:3]
                    group = f"{self.ruleset}/{direction}/{label}/{target}/{arg}/{shape}"
                    if len(key) > 3:  # ports in the rule (`_wide`): its ports name it too
                        group += f"/{key[3]}/{key[4]}"
                    name = lookup_set_name(family, shape, group)
                    groups[name] = group
                    lset = LookupSet(name, family, shape)
                    elements = made[key] = lset.elements
                    # ports in the rule: its protocol and ports; else a TCP reset needs
                    # `-p tcp` (the kernel refuses the REJECT otherwise; its elements
                    # are all tcp)
                    proto, dports = key[3:] if len(key) > 3 else (None, None)
                    if proto is None and arg == "tcp-reset":
                        proto = "tcp"
                    out.append(
                        IRRule(
                            target,
                            f"rpt:sys:set:{name}",
                            proto=proto,
                            dports=dports,
                            arg=arg,
                            lookup=lset,
                        )
                    )
                tag = r.tag
                if len(values) == 1:
                    elements.append(_new_tuple(SetElement, (values[0], tag, rid)))
                else:
                    elements.extend([_new_tuple(SetElement, (v, tag, rid)) for v in values])
        if self.elements_max is not None:
            out = self._parts(out, groups, family)
        return self._guard(out, family, direction, label)

    def _parts(self, out: list[IRRule], groups: dict[str, str], family: int) -> list[IRRule]:
        """Each set-lookup rule over more than `elements_max` kernel elements as the rules
        of its set's parts (set_parts.py)."""
        limit = self.elements_max
        assert limit is not None
        result: list[IRRule] = []
        for r in out:
            if r.lookup is None:
                result.append(r)
                continue
            shape = r.lookup.shape

            def name_of(key: str, shape: str = shape) -> str:
                return lookup_set_name(family, shape, key)

            result.extend(cut(r, groups[r.lookup.name], limit, self.intervals, name_of))
        return result

    def _guard(
        self, rules: list[IRRule], family: int, direction: str, label: str
    ) -> tuple[list[IRRule], list[Guard]]:
        """A block's kernel rules with those that name source networks moved behind one
        guard, if there are at least `guard_min` of them: `-m set --match-set <their
        networks> src -j <a chain of them>`. A packet from elsewhere skips them with one
        lookup; one from there meets them sorted by port behind jumps by port range
        (`_tree`). The block is disjoint, so they may leave their places; a policy rule's
        kernel rules stay together and in order; falling off a chain returns to the one
        that jumped (the chains hold only verdicts, LOG and these jumps)."""
        if self.guard_min is None:
            return rules, []
        moved: list[tuple[str | None, list[IRRule]]] = []
        kept: list[IRRule] = []
        at = None
        for rid, irs in _units(rules):
            if rid is not None and all(
                r.lookup is None and r.src is not None and not r.src.negate for r in irs
            ):
                if at is None:
                    at = len(kept)
                moved.append((rid, irs))
            else:
                kept.extend(irs)
        if at is None or sum(len(irs) for _, irs in moved) < self.guard_min:
            return rules, []
        nets = collapse([net for _, irs in moved for r in irs for net in r.src.nets])  # type: ignore[union-attr]
        if nets[0].plen == 0:  # every address: no guard can say less
            return rules, []
        key = f"{label}/guard"
        body, below = self._tree(moved, direction, key)
        chain = Chain(segment_chain(self.ruleset, direction, key), body)
        guard = IpSet(set_name(family, nets), family, nets)
        # its own tag (a jump's kind, `rpt:jump:`): segments name themselves by it
        tag = f"rpt:jump:{chain.name}"
        jump = IRRule(JUMP, tag, AddrMatch(nets, False, guard.name), arg=chain.name)
        kept.insert(at, jump)
        return kept, [(chain, guard), *((c, None) for c in below)]

    def _tree(
        self, units: list[tuple[str | None, list[IRRule]]], direction: str, key: str
    ) -> tuple[list[IRRule], list[Chain]]:
        """The kernel rules of disjoint policy rules, those of one protocol and destination
        ports sorted by port and, more than `LEAF_MAX` of them, behind `-p P --dport lo:hi`
        jumps to chains of `TREE_FANOUT` parts, recursively: a packet meets O(log n) jumps
        and one leaf instead of every rule. Rules of no single protocol and ports come
        first, as they are."""
        rules: list[IRRule] = []
        by_proto: dict[str, list[tuple[int, int, list[IRRule]]]] = {}
        for _, irs in units:
            proto = irs[0].proto
            if proto is None or any(r.proto != proto or not r.dports for r in irs):
                rules.extend(irs)
                continue
            lo = min(r.dports[0][0] for r in irs)  # type: ignore[index]
            hi = max(r.dports[-1][1] for r in irs)  # type: ignore[index]
            by_proto.setdefault(proto, []).append((lo, hi, irs))
        chains: list[Chain] = []
        for proto in sorted(by_proto):
            parts = sorted(by_proto[proto], key=lambda part: part[0])
            rules.extend(self._node(parts, proto, direction, f"{key}/{proto}", chains))
        return rules, chains

    def _node(
        self,
        parts: list[tuple[int, int, list[IRRule]]],
        proto: str,
        direction: str,
        key: str,
        chains: list[Chain],
    ) -> list[IRRule]:
        """One node of `_tree`: its rules, its chains below added to `chains`."""
        if len(parts) <= LEAF_MAX:
            return [r for _, _, irs in parts for r in irs]
        size = -(-len(parts) // TREE_FANOUT)
        jumps = []
        for k in range(0, len(parts), size):
            part = parts[k : k + size]
            lo, hi = part[0][0], max(p[1] for p in part)
            name = segment_chain(self.ruleset, direction, f"{key}/{k}")
            chain = Chain(name, [])
            chains.append(chain)
            chain.rules = self._node(part, proto, direction, f"{key}/{k}", chains)
            jumps.append(
                IRRule(JUMP, f"rpt:jump:{name}", proto=proto, dports=((lo, hi),), arg=name)
            )
        return jumps

    def _plan(self, irs: list[IRRule], family: int) -> list[tuple[tuple, list[tuple]]] | None:
        """Per kernel rule of one policy rule: (group key, element values); None if the
        rule stays kernel rules (something a set cannot say, or too many elements)."""
        plan = []
        total = 0
        for r in irs:
            if not _settable(r):
                return None
            entry = self._plan_rule(
                r, _nets(r.src), _nets(r.dst), family, RULE_MAX_ELEMENTS - total
            )
            if entry is None:
                return None
            plan.append(entry[0])
            total += entry[1]
        return plan

    def _plan_rule(
        self,
        r: IRRule,
        srcs: tuple[Net, ...] | None,
        dsts: tuple[Net, ...] | None,
        family: int,
        room: int,
    ) -> tuple[tuple[tuple, list[tuple]], int] | None:
        """One settable kernel rule's (group key, element values) and how many elements
        that is; None if no set shape fits or it is more than `room` elements. `srcs`,
        `dsts`: its sides' networks (`_nets`)."""
        shape = _shape(srcs, dsts, r.proto is not None, self.types)
        if shape is None:
            return None
        if self.intervals:  # one shape for all: a side it does not name is every address
            shape = "spd" if r.proto is not None else "sd"
            srcs, dsts = srcs or (_WHOLE[family],), dsts or (_WHOLE[family],)
        dports = r.dports or ()
        range_max = self.range_max
        for lo, hi in dports:
            if hi - lo >= range_max:
                # one element per port would be too many: the ports stay in the kernel
                # rule, its addresses go to the set (`_wide`)
                wide = _wide(r, srcs, dsts, self.types)
                if wide is None or len(wide[1]) > room:
                    return None
                return wide, len(wide[1])
        if r.proto is None:
            width = 1
        elif range_max > 65535:  # ranges are elements (nft intervals): count 1
            width = len(dports)
        elif len(dports) == 1:  # ipset: a range is one element per port
            width = dports[0][1] - dports[0][0] + 1
        else:
            width = sum(hi - lo + 1 for lo, hi in dports)
        count = len(srcs or (1,)) * len(dsts or (1,)) * width
        if count > room:
            return None
        return ((r.target, r.arg, shape), _values(shape, srcs, dsts, r.proto, dports)), count
