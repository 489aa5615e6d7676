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

# a rule whose elements (port ranges expanded) exceed this stays a kernel rule
RULE_MAX_ELEMENTS = 4096
# a rule of more boxes than this is taken to overlap everything (it gets a block of its own)
RULE_MAX_BOXES = 4096
# more candidates than this for one disjointness test: the rules are taken to overlap
CANDIDATES_MAX = 512
_BITS = {4: 32, 6: 128}
_VERDICTS = (ACCEPT, DROP, REJECT)

# (s_first, s_last, s_plen, d_first, d_last, d_plen, proto, ports)
Box = tuple
# a block's guarded chain and the address set of its guard rule (see `_guard`)
Guard = tuple[Chain, IpSet]
# what a chain's block pass leaves for the next compile of it: per policy rule (rule id,
# its first kernel rule, how many), the index of each block's first rule, each block's
# rules and its guards
Blocks = tuple[list[tuple], list[int], list[list[IRRule]], list[list[Guard]]]
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
        ports = [_new_tuple(PortElem, (proto, lo, hi)) for lo, hi in dports]
        if len(nets) == 1 and len(ports) == 1:
            return [(nets[0], ports[0])]
        return [(n, p) for n in nets for p in ports]
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


def _port_keys(box: Box) -> list[tuple[str, int]] | None:
    """The port buckets a box covers; None if it is wild (no protocol, no ports, or wide)."""
    proto, ports = box[6], box[7]
    if proto is None or ports is None:
        return None
    if len(ports) == 1:
        lo, hi = ports[0]
        lo, hi = lo >> _PORT_SHIFT, hi >> _PORT_SHIFT
        if lo == hi:
            return [(proto, lo)]
        return [(proto, b) for b in range(lo, hi + 1)] if hi - lo < _PORT_BUCKETS_MAX else None
    if len(ports) > _PORT_BUCKETS_MAX:
        return None
    keys: list[tuple[str, int]] = []
    for lo, hi in ports:
        lo, hi = lo >> _PORT_SHIFT, hi >> _PORT_SHIFT
        if lo == hi:
            keys.append((proto, lo))
        else:
            keys.extend([(proto, b) for b in range(lo, hi + 1)])
            if len(keys) > _PORT_BUCKETS_MAX:
                return None
    return keys


class _Block:
    """The rules of the block being built, indexed for the disjointness test.

    First by destination port bucket (policies mostly differ in ports); where that finds
    too many candidates, by source and destination prefix, indexes built on first need.
    """

    def __init__(self, family: int) -> None:
        self.bits = _BITS[family]
        # the prefix lengths the address indexes cover, per side: those of the block's
        # boxes and of the boxes tested against it (a new one rebuilds the indexes)
        self.plens: tuple[list[int], list[int]] = ([0], [0])
        self.boxes: list[Box] = []
        self.by_port: dict[tuple[str, int], list[Box]] = {}
        self.port_wild: list[Box] = []
        # per side, built on first need: (prefix length, masked address) -> boxes with
        # exactly that prefix ("exact"), or with a prefix at least that long in it ("under")
        self.sides: tuple[dict, dict, dict, dict] | None = None
        self.units: list[tuple[str | None, list[IRRule]]] = []

    def _cover(self, side: int, plen: int) -> None:
        """Make the address indexes cover prefix length `plen` on one side."""
        plens = self.plens[side]
        if plen not in plens:
            plens.append(plen)
            plens.sort()
            self.sides = None  # rebuilt on next need

    def add(self, boxes: list[Box], box_keys: list) -> None:
        """Add a rule's boxes, with their port buckets (`_port_keys`)."""
        self.boxes.extend(boxes)
        for box in boxes:
            self._cover(0, box[2])
            self._cover(1, box[5])
        by_port = self.by_port
        for box, keys in zip(boxes, box_keys, strict=True):
            if keys is None:
                self.port_wild.append(box)
            else:
                for key in keys:
                    found = by_port.get(key)
                    if found is None:
                        by_port[key] = [box]
                    else:
                        found.append(box)
        if self.sides is not None:
            self._index(boxes)

    def _index(self, boxes: list[Box]) -> None:
        assert self.sides is not None
        bits = self.bits
        for box in boxes:
            for side in (0, 1):
                first, plen = box[3 * side], box[3 * side + 2]
                exact, under = self.sides[2 * side], self.sides[2 * side + 1]
                exact.setdefault((plen, first >> (bits - plen)), []).append(box)
                for q in self.plens[side]:
                    if q > plen:
                        break
                    under.setdefault((q, first >> (bits - q)), []).append(box)

    def _side(self, side: int, box: Box) -> list[list[Box]]:
        """Buckets holding every box that may overlap `box` on one side."""
        self._cover(side, box[3 * side + 2])
        if self.sides is None:
            self.sides = ({}, {}, {}, {})
            self._index(self.boxes)
        bits = self.bits
        first, plen = box[3 * side], box[3 * side + 2]
        exact, under = self.sides[2 * side], self.sides[2 * side + 1]
        found = []
        for q in self.plens[side]:
            if q >= plen:
                break
            bucket = exact.get((q, first >> (bits - q)))
            if bucket:
                found.append(bucket)
        bucket = under.get((plen, first >> (bits - plen)))
        if bucket:
            found.append(bucket)
        return found

    def _candidates(self, box: Box, keys: list | None) -> list[list[Box]] | None:
        """Lists holding every box of the block that may overlap `box` (None: too many)."""
        if keys is not None:
            by_port = self.by_port
            found = [by_port.get(key, ()) for key in keys]
            found.append(self.port_wild)
            if sum(map(len, found)) <= CANDIDATES_MAX // 8:
                return found  # type: ignore[return-value]
        best = min(
            (self._side(0, box), self._side(1, box)),
            key=lambda buckets: sum(map(len, buckets)),
        )
        return best if sum(map(len, best)) <= CANDIDATES_MAX else None

    def overlaps(self, boxes: list[Box], box_keys: list) -> bool:
        """Whether a rule's boxes overlap any of the block's."""
        if not self.boxes:
            return False
        for box, keys in zip(boxes, box_keys, strict=True):
            found = self._candidates(box, keys)
            if found is None:
                return True
            for bucket in found:
                for other in bucket:
                    if _overlap(box, other):
                        return True
        return False


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
    ) -> None:
        self.ruleset = ruleset
        self.types = types
        self.min_rules = min_rules
        self.range_max = range_max
        self.guard_min = guard_min

    def compile(
        self, rules: list[IRRule], family: int, direction: str, earlier: Blocks | None = None
    ) -> tuple[list[IRRule], Blocks]:
        """The chain's rules with its set-compiled groups replaced by set lookups, and what
        the next compile of the chain can reuse (`Blocks`).

        With `earlier` (the last compile of this chain, same options), blocks before the
        first changed rule are taken as they were, and so are those after the change once
        the partition meets a block start of the earlier one among the unchanged last
        rules: the greedy partition from a block start depends only on the rules from
        there on. Unchanged rules are the very same kernel rule objects (rulesets.py lends
        them), so they are recognised by identity.
        """
        units = _units(rules)
        keys = [(rid, irs[0], len(irs)) for rid, irs in units]
        n = len(units)
        starts: list[int] = []
        outs: list[list[IRRule]] = []
        guards: list[list[Guard]] = []
        begin, tail, resume = 0, n, {}
        if earlier is not None:
            old_keys, old_starts, old_outs, old_guards = earlier
            m = len(old_keys)
            k = 0
            while k < n and k < m and _same(keys[k], old_keys[k]):
                k += 1
            # blocks closed (by the unit after them) before the first change: as they were
            for b, start in enumerate(old_starts):
                end = old_starts[b + 1] if b + 1 < len(old_starts) else m
                if end >= k:
                    break
                starts.append(start)
                outs.append(old_outs[b])
                guards.append(old_guards[b])
                begin = end
            t = 0
            while t < n - begin and t < m - begin and _same(keys[n - 1 - t], old_keys[m - 1 - t]):
                t += 1
            tail = n - t  # units from here on are the earlier ones, shifted by m - n
            resume = {start - (m - n): b for b, start in enumerate(old_starts)}
            if begin >= tail and begin in resume:  # nothing changed after all
                b = resume[begin]
                starts.extend(s - (m - n) for s in old_starts[b:])
                outs.extend(old_outs[b:])
                guards.extend(old_guards[b:])
                return [r for out in outs for r in out], (keys, starts, outs, guards)
        block = _Block(family)
        plans: list = []
        start = begin
        for i in range(begin, n):
            rid, irs = units[i]
            fact = self._simple(irs[0], family) if len(irs) == 1 and rid is not None else None
            if fact is None:
                boxes = _boxes(irs, family)
                fact = (boxes, [_port_keys(b) for b in boxes], self._plan(irs) if rid else None)
            boxes, box_keys, plan = fact
            if block.overlaps(boxes, box_keys):
                starts.append(start)
                out, guard = self._emit(block.units, plans, family, direction)
                outs.append(out)
                guards.append(guard)
                if i >= tail and i in resume and earlier is not None:  # the earlier ones
                    b = resume[i]
                    shift = n - len(earlier[0])
                    starts.extend(s + shift for s in earlier[1][b:])
                    outs.extend(earlier[2][b:])
                    guards.extend(earlier[3][b:])
                    return [r for out in outs for r in out], (keys, starts, outs, guards)
                block, plans, start = _Block(family), [], i
            block.add(boxes, box_keys)
            block.units.append(units[i])
            plans.append(plan)
        if block.units:
            starts.append(start)
            out, guard = self._emit(block.units, plans, family, direction)
            outs.append(out)
            guards.append(guard)
        return [r for out in outs for r in out], (keys, starts, outs, guards)

    def _simple(self, r: IRRule, family: int) -> tuple | None:
        """`_boxes`, `_port_keys` and `_plan` at once for the frequent rule: one source
        network, one tcp/udp port (None for any other)."""
        src, dports = r.src, r.dports
        if (
            r.dst is None
            and src is not None
            and len(src.nets) == 1
            and dports is not None
            and len(dports) == 1
            and dports[0][0] == dports[0][1]
            and "hash:net,port" in self.types
            and _settable(r)
        ):
            net = src.nets[0]
            if not net.plen:
                return None
            proto, port = r.proto, dports[0][0]
            box = (net.first, net.last, net.plen, 0, (1 << _BITS[family]) - 1, 0, proto, dports)
            elem = _new_tuple(PortElem, (proto, port, port))
            return (
                [box],
                [[(proto, port >> _PORT_SHIFT)]],
                [((r.target, r.arg, "sp"), [(net, elem)])],
            )
        return None

    def _emit(
        self,
        units: list[tuple[str | None, list[IRRule]]],
        plans: list[list[tuple[tuple, list[tuple]]] | None],
        family: int,
        direction: str,
    ) -> tuple[list[IRRule], list[Guard]]:
        """One block's kernel rules: per group big enough one set lookup, at the place of
        its first rule; everything else as it was, in its place (or behind a guard, see
        `_guard`). `plans`: per policy rule, its kernel rules' group keys and element
        values (None: it stays as it is)."""
        members: dict[tuple, int] = {}
        for plan in plans:
            if plan is not None:
                keys = {plan[0][0]} if len(plan) == 1 else {key for key, _ in plan}
                for key in keys:
                    members[key] = members.get(key, 0) + 1
        big = {key for key, count in members.items() if count >= self.min_rules}
        first_id = next((rid for rid, _ in units if rid is not None), "")
        if not big:
            return self._guard([r for _, irs in units for r in irs], family, direction, first_id)
        made: dict[tuple, list[SetElement]] = {}
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
                    group = f"{self.ruleset}/{direction}/{first_id}/{target}/{arg}/{shape}"
                    if len(key) > 3:  # ports in the rule (`_wide`): its ports name it too
                        group += f"/{key[3]}/{key[4]}"
                    name = lookup_set_name(family, shape, group)
                    lset = LookupSet(name, family, shape)
                    elements = made[key] = lset.elements
                    out.append(
                        IRRule(target, f"rpt:sys:set:{name}", arg=arg, lookup=lset)
                        if len(key) == 3
                        else IRRule(
                            target,
                            f"rpt:sys:set:{name}",
                            proto=key[3],
                            dports=key[4],
                            arg=arg,
                            lookup=lset,
                        )
                    )
                tag = r.tag
                if len(values) == 1:
                    elements.append(_new_tuple(SetElement, (values[0], tag, rid)))
                else:
                    elements.extend([_new_tuple(SetElement, (v, tag, rid)) for v in values])
        return self._guard(out, family, direction, first_id)

    def _guard(
        self, rules: list[IRRule], family: int, direction: str, first_id: str
    ) -> tuple[list[IRRule], list[Guard]]:
        """A block's kernel rules with those that name source networks moved behind one
        guard, if there are at least `guard_min` of them: `-m set --match-set <their
        networks> src -j <a chain of them>`. A packet from elsewhere skips them with one
        lookup. The block is disjoint, so they may leave their places; a policy rule's
        kernel rules stay together and in order; falling off the chain returns to the
        block (the chain holds only verdicts and LOG)."""
        if self.guard_min is None:
            return rules, []
        moved: list[IRRule] = []
        kept: list[IRRule] = []
        at = None
        for rid, irs in _units(rules):
            if rid is not None and all(
                r.lookup is None and r.src is not None and not r.src.negate for r in irs
            ):
                if at is None:
                    at = len(kept)
                moved.extend(irs)
            else:
                kept.extend(irs)
        if at is None or len(moved) < self.guard_min:
            return rules, []
        nets = collapse([net for r in moved for net in r.src.nets])  # type: ignore[union-attr]
        if nets[0].plen == 0:  # every address: no guard can say less
            return rules, []
        chain = Chain(segment_chain(self.ruleset, direction, f"{first_id}/guard"), moved)
        guard = IpSet(set_name(family, nets), family, nets)
        # its own tag (a jump's kind, `rpt:jump:`): segments name themselves by it
        tag = f"rpt:jump:{chain.name}"
        jump = IRRule(JUMP, tag, AddrMatch(nets, False, guard.name), arg=chain.name)
        kept.insert(at, jump)
        return kept, [(chain, guard)]

    def _plan(self, irs: list[IRRule]) -> list[tuple[tuple, list[tuple]]] | None:
        """Per kernel rule of one policy rule: (group key, element values); None if the
        rule stays kernel rules (something a set cannot say, or too many elements)."""
        plan = []
        total = 0
        for r in irs:
            if not _settable(r):
                return None
            srcs, dsts = _nets(r.src), _nets(r.dst)
            shape = _shape(srcs, dsts, r.proto is not None, self.types)
            if shape is None:
                return None
            dports = r.dports or ()
            if any(hi - lo >= self.range_max for lo, hi in dports):
                # one element per port would be too many: the ports stay in the kernel
                # rule, its addresses go to the set (`_wide`)
                wide = _wide(r, srcs, dsts, self.types)
                if wide is None:
                    return None
                total += len(wide[1])
                if total > RULE_MAX_ELEMENTS:
                    return None
                plan.append(wide)
                continue
            if r.proto is None:
                width = 1
            elif self.range_max > 65535:  # ranges are elements (nft intervals): count 1
                width = len(dports)
            else:  # ipset: a range is one element per port
                width = sum(hi - lo + 1 for lo, hi in dports)
            total += len(srcs or (1,)) * len(dsts or (1,)) * width
            if total > RULE_MAX_ELEMENTS:
                return None
            plan.append(((r.target, r.arg, shape), _values(shape, srcs, dsts, r.proto, dports)))
        return plan
