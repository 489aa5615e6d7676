"""Policy → chains, in exactly the evaluation order of POLICY-FORMAT.md "Meaning".

Per family, `RPT-INPUT`/`RPT-FORWARD`/`RPT-OUTPUT` hold the fixed steps (loopback,
conntrack, ICMPv6 discovery, anti-lockout), then one jump per rule set of the device (in
order) into that rule set's own chain, then the device's default policy. A rule set's chain
only holds terminating verdicts (and LOG), so falling off its end continues with the next
rule set, which is the first-match semantics of the document. A rule set has the same chain
on every device, so changing one rule set rewrites one chain.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import NamedTuple

from .document import (
    Device,
    PolicyDocument,
    Rule,
    RuleSet,
    fallback_ids,
    fallback_rule_id,
    parse_nat_target,
)
from .errors import CompileError, FieldError
from .ir import (
    ACCEPT,
    CHAIN_MAX,
    DNAT,
    DROP,
    JUMP,
    LOG,
    MASQUERADE,
    REJECT,
    SNAT,
    AddrMatch,
    Chain,
    IpSet,
    Program,
    RuleInfo,
    Table,
)
from .ir import Rule as IRRule
from .resolve import FamilyMatch, Nets, PortRanges, ProtoSpec, Resolver, merge_ports
from .values import parse_port

MULTIPORT_MAX = 15
# A rule set's chain longer than SEGMENT_MAX kernel rules is cut into segment chains that
# its chain jumps to in order. Where to cut depends on the rules themselves (about 1 policy
# rule in SEGMENT_EVERY, chosen by its uuid), never on positions: inserting or deleting a
# rule changes one segment, and the agent rewrites or edits only that chain (with the nft
# backend an edit costs with the size of the chain it touches).
SEGMENT_MAX = 1000
SEGMENT_EVERY = 256
ND_TYPES = (133, 134, 135, 136, 137)
_TARGET = {"accept": ACCEPT, "drop": DROP, "reject": REJECT}
_CHAIN_LETTER = {"input": "I", "forward": "F", "output": "O"}
_NO_BASE = (None, None, None, None, None)
_UNSET = object()
# NamedTuple instances without the Python-level __new__ (half the cost; hot loop only)
_new_tuple = tuple.__new__


@dataclass(frozen=True)
class CompileOptions:
    """Knobs of the compiler.

    `ipset_threshold`: a source/destination list with more networks than this (per family)
    becomes an ipset. `forward_fallthrough`: for hosts where other software filters forwarded
    traffic (Docker, kube-proxy): a forward default of `accept` is not written, so a packet
    no rule decided returns to FORWARD and still meets DOCKER-USER / DOCKER-FORWARD /
    KUBE-FORWARD (an ACCEPT in RPT-FORWARD would skip Docker's isolation rules).
    """

    ipset_threshold: int = 8
    forward_fallthrough: bool = False

    def __post_init__(self) -> None:
        if self.ipset_threshold < 1:
            raise ValueError("ipset_threshold must be at least 1")


def short_hash(text: str, size: int = 4) -> str:
    return hashlib.blake2s(text.encode(), digest_size=size).hexdigest()


def ruleset_chain(ruleset: str, chain: str) -> str:
    """`RPT-I-<name, cut>-<8 hex>`: readable, unique, at most 28 characters."""
    name = f"RPT-{_CHAIN_LETTER[chain]}-{ruleset[:13]}-{short_hash(ruleset)}"
    assert len(name) <= CHAIN_MAX
    return name


def segment_chain(ruleset: str, chain: str, first_rule_id: str) -> str:
    """`RPT-I-<name, cut>-<12 hex>`: a segment of a long rule-set chain, named by the rule
    set and the rule it starts with (so it keeps its name while other segments change)."""
    return f"RPT-{_CHAIN_LETTER[chain]}-{ruleset[:6]}-{short_hash(f'{ruleset}/{first_rule_id}', 6)}"


def segments(chain: Chain, ruleset: str, direction: str) -> list[Chain]:
    """`chain` itself if short enough; else a chain of jumps to its segments, then them.

    Segment rules are verdicts (and LOG), so falling off a segment's end returns to the
    next jump: the same first-match order as one long chain. A policy rule's kernel rules
    stay in one segment.
    """
    if len(chain.rules) <= SEGMENT_MAX:
        return [chain]
    pieces: list[list[IRRule]] = []
    current: list[IRRule] = []
    last_id = None
    crc32 = zlib.crc32
    for rule in chain.rules:
        rid = rule.rule_id
        if (
            rid != last_id
            and current
            and (len(current) >= SEGMENT_MAX or crc32(rid.encode()) % SEGMENT_EVERY == 0)
        ):
            pieces.append(current)
            current = []
        current.append(rule)
        last_id = rid
    pieces.append(current)
    parts = [Chain(segment_chain(ruleset, direction, piece[0].rule_id), piece) for piece in pieces]
    head = Chain(chain.name, [IRRule(JUMP, "rpt:jump", arg=part.name) for part in parts])
    return [head, *parts]


class _Chains(dict):
    """Chains by name, each made on first use."""

    def __missing__(self, name: str) -> Chain:
        chain = self[name] = Chain(name)
        return chain


def set_name(family: int, nets: Nets) -> str:
    """Sets are named by content (see docs/bundle-format.md)."""
    digest = hashlib.blake2s(" ".join([n.text for n in nets]).encode(), digest_size=6).hexdigest()
    return f"rpt-{family}-{digest}"


def rule_tag(rule_id: str, rule: Rule) -> str:
    """`rpt:<uuid>:<8 hex>`; the hash covers what the rule says (not its comment or id)."""
    key = (
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
    return f"rpt:{rule_id}:{zlib.crc32(repr(key).encode()):08x}"


def rule_tagger() -> Callable[[str, Rule], str]:
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


def port_chunks(ports: tuple[tuple[int, int], ...] | None) -> list | tuple:
    """Split a port list into multiport-sized pieces (max 15 slots, a range takes 2)."""
    if ports is None or len(ports) <= 7:
        return (ports,)
    chunks, current, used = [], [], 0
    for lo, hi in ports:
        cost = 1 if lo == hi else 2
        if used + cost > MULTIPORT_MAX:
            chunks.append(tuple(current))
            current, used = [], 0
        current.append((lo, hi))
        used += cost
    chunks.append(tuple(current))
    return chunks


class Built(NamedTuple):
    """What lowering built for one rule set (an entry of `RulesetCache`)."""

    exact: tuple  # (rules, which expiring rules are active, the document's objects)
    chains: dict[int, dict[str, Chain]]
    infos: dict[str, RuleInfo]
    sets: dict[str, IpSet]
    memo: dict[str, tuple]  # rule id -> (rule, kernel rules per family, set names)


class RulesetCache:
    """What lowering built per rule set, kept for the next compiles in this process.

    A rule set's chains are the same on every device and from one deploy to the next, so
    a deploy to a device group, a redeploy, a preview or a trace reuse them (and the
    renderer's text of them, see `Chain.memo`) instead of lowering and rendering every rule
    again; after an edit, the unchanged rules and segments are reused. An entry is found by
    rule set name and options, and used whole only if everything its chains depend on is
    equal: the rules, which of its expiring rules are still active, and the document's
    objects (rules alone if only they differ). Comparing is cheap when they are the very
    same objects (the parsed document is cached per deployment), a linear scan otherwise;
    a cold compile never hashes 50k rules. Least recently used entries go first once more
    than `max_rules` kernel rules are kept.
    """

    def __init__(self, max_rules: int = 300_000) -> None:
        self.max_rules = max_rules
        self._entries: OrderedDict[tuple, tuple[Built, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Built | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: tuple, value: Built, size: int) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1]
            if size > self.max_rules:
                return
            self._entries[key] = (value, size)
            self._size += size
            while self._size > self.max_rules:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0


RULESET_CACHE = RulesetCache()


class Lowerer:
    """Builds a `Program` for one device; rule-set chains are built once per family."""

    def __init__(
        self,
        doc: PolicyDocument,
        options: CompileOptions,
        now: datetime,
        resolver: Resolver | None = None,
    ):
        self.doc = doc
        self.options = options
        self.now = now
        self.resolver = resolver or Resolver(doc)
        self.sets: dict[str, IpSet] = {}
        self.rules: dict[str, RuleInfo] = {}
        self._rs_chains: dict[str, dict[int, dict[str, Chain]]] = {}
        self._objects_key: tuple | None = None
        self._ports: dict[tuple[str, ...], PortRanges | None] = {}
        self._doc_ports = doc.ports

    # ---- addresses
    def addr_options(self, family: int, nets: Nets | None, negate: bool) -> list:
        if nets is None:
            return [None]
        if len(nets) > self.options.ipset_threshold or (negate and len(nets) > 1):
            name = set_name(family, nets)
            if name not in self.sets:
                self.sets[name] = IpSet(name, family, nets)
            return [AddrMatch(nets, negate, name)]
        return [AddrMatch((net,), negate) for net in nets]

    def expand(
        self,
        fm: FamilyMatch,
        base: tuple,
        target: str,
        tag: str,
        rule_id: str | None,
        arg: str | None = None,
        log_prefix: str | None = None,
    ) -> list[IRRule]:
        """All kernel rules of one policy rule in one family (cross product of alternatives).

        `base` is (in_iface, out_iface, states, limit, burst).
        """
        in_if, out_if, states, limit, burst = base
        src, dst, protos = fm.src, fm.dst, fm.protos
        if (
            log_prefix is None
            and len(protos) == 1
            and (src is None or len(src) == 1)
            and (dst is None or len(dst) == 1)
        ):
            # the common case: one kernel rule, built without the loops below
            spec = protos[0]
            if (spec.sports is None or len(spec.sports) <= 7) and (
                spec.dports is None or len(spec.dports) <= 7
            ):
                return [
                    IRRule(
                        target,
                        tag,
                        None if src is None else AddrMatch(src, fm.src_negate),
                        None if dst is None else AddrMatch(dst, fm.dst_negate),
                        in_if,
                        out_if,
                        spec.protocol,
                        spec.sports,
                        spec.dports,
                        spec.icmp_type,
                        states,
                        limit,
                        burst,
                        arg,
                        rule_id,
                    )
                ]
        srcs = self.addr_options(fm.family, fm.src, fm.src_negate)
        dsts = self.addr_options(fm.family, fm.dst, fm.dst_negate)
        out: list[IRRule] = []
        for spec in fm.protos:
            for s in srcs:
                for d in dsts:
                    for sp in port_chunks(spec.sports):
                        for dp in port_chunks(spec.dports):
                            if log_prefix is not None:
                                out.append(
                                    IRRule(
                                        LOG,
                                        tag,
                                        s,
                                        d,
                                        in_if,
                                        out_if,
                                        spec.protocol,
                                        sp,
                                        dp,
                                        spec.icmp_type,
                                        states,
                                        limit,
                                        burst,
                                        log_prefix,
                                        rule_id,
                                    )
                                )
                            out.append(
                                IRRule(
                                    target,
                                    tag,
                                    s,
                                    d,
                                    in_if,
                                    out_if,
                                    spec.protocol,
                                    sp,
                                    dp,
                                    spec.icmp_type,
                                    states,
                                    limit,
                                    burst,
                                    arg,
                                    rule_id,
                                )
                            )
        return out

    # ---- rule sets
    def ruleset_chains(self, rs: RuleSet, family: int) -> dict[str, Chain]:
        """The rule set's chains in one family (both families are built in one pass)."""
        built = self._rs_chains.get(rs.name)
        if built is None:
            built = self._rs_chains[rs.name] = self._cached_ruleset(rs)
        return built[family]

    def _cached_ruleset(self, rs: RuleSet) -> dict[int, dict[str, Chain]]:
        """`_build_ruleset`, with what an earlier compile in this process built for a rule
        set of this name (see `RulesetCache`): all of it if nothing it depends on changed,
        else the rules that did not change (same rule, same objects, same options)."""
        expiring = tuple(r.expires_at > self.now for r in rs.rules if r.expires_at is not None)
        if self._objects_key is None:
            doc = self.doc
            self._objects_key = (
                doc.addresses,
                doc.address_groups,
                doc.services,
                doc.service_groups,
            )
        key = (rs.name, self.options.ipset_threshold, SEGMENT_MAX, SEGMENT_EVERY)
        exact = (rs.rules, expiring, self._objects_key)
        entry = RULESET_CACHE.get(key)
        if entry is not None and entry.exact == exact:
            self.rules.update(entry.infos)
            self.sets.update(entry.sets)
            return entry.chains
        if entry is not None and entry.exact[2] != self._objects_key:
            entry = None  # another document's objects: nothing can be reused
        infos: dict[str, RuleInfo] = {}
        memo: dict[str, tuple] = {}
        used: set[str] = set()
        chains = self._build_ruleset(rs, infos, memo, entry, used)
        self.rules.update(infos)
        # every set its rules use, also those another rule set of this compile made first
        sets = {name: self.sets[name] for name in sorted(used)}
        size = (
            1
            + sum(len(c.rules) for fam in chains.values() for c in fam.values())
            + sum(len(s.nets) for s in sets.values())
        )
        RULESET_CACHE.put(key, Built(exact, chains, infos, sets, memo), size)
        return chains

    def _build_ruleset(
        self,
        rs: RuleSet,
        infos: dict[str, RuleInfo],
        memo: dict[str, tuple],
        earlier: Built | None = None,
        used: set[str] | None = None,
    ) -> dict[int, dict[str, Chain]]:
        """The rule set's chains per family; where each rule came from goes to `infos`, the
        names of the sets its rules use to `used`.

        `memo` receives, per rule with an id, (rule, its kernel rules per family, the sets
        they use); `earlier` (the last build of a rule set of this name, same objects) lends
        its kernel rules to the rules that are unchanged, and its chains to the segments
        whose rules are all the same (their rendered text comes with them).
        """
        used = set() if used is None else used
        out: dict[int, dict[str, Chain]] = {4: _Chains(), 6: _Chains()}
        names = {c: ruleset_chain(rs.name, c) for c in _CHAIN_LETTER}
        # hot loop (once per rule): names bound locally
        now, resolve, expand = self.now, self.resolver.rule, self.expand
        simple_net, port_list, tag_of = self.resolver.simple_net, self._port_list, rule_tagger()
        upper_states: dict[tuple[str, ...], tuple[str, ...]] = {}
        fallback = fallback_ids(rs.name, "rules")
        rs_name = rs.name
        known = earlier.memo.get if earlier is not None else None
        for index, rule in enumerate(rs.rules):
            # one unpacking instead of a lookup per field (document.Rule is a NamedTuple)
            (
                chain_name,
                action,
                rid,
                sources,
                destinations,
                services,
                proto,
                dports_text,
                sports_text,
                sources_negate,
                destinations_negate,
                in_iface,
                out_iface,
                rule_states,
                log,
                _,
                rate_limit,
                burst,
                comment,
                enabled,
                expires_at,
                _,
            ) = rule
            if not enabled or (expires_at is not None and expires_at <= now):
                continue
            rule_id = rid or fallback(index)
            infos[rule_id] = _new_tuple(RuleInfo, (rs_name, index + 1, comment, "filter"))
            name = names[chain_name]
            if known is not None and rid is not None:
                found = known(rid)
                if found is not None and found[0] == rule:  # unchanged: its kernel rules
                    for family, irs in found[1]:
                        out[family][name].rules.extend(irs)
                    for set_name in found[2]:
                        self.sets[set_name] = earlier.sets[set_name]
                    used.update(found[2])
                    memo[rid] = found
                    continue
            states = None
            if rule_states:
                states = upper_states.get(rule_states)
                if states is None:
                    states = upper_states[rule_states] = tuple(s.upper() for s in rule_states)
            tag = tag_of(rule_id, rule)
            target = _TARGET[action]
            # The frequent shape (see Resolver._simple): literal tcp/udp, one literal
            # host/CIDR per side, no log, at most 7 port ranges a side → one kernel rule,
            # built here without the FamilyMatch/ProtoSpec detour; same IR as expand().
            if (
                (proto == "tcp" or proto == "udp")
                and not services
                and not log
                and len(sources) == 1
                and len(destinations) <= 1
            ):
                src = simple_net(sources[0])
                dst = simple_net(destinations[0]) if destinations else None
                if src is not None and (
                    not destinations or (dst is not None and dst[0].version == src[0].version)
                ):
                    dports = port_list(dports_text)
                    sports = port_list(sports_text) if sports_text else None
                    if (dports is None or len(dports) <= 7) and (
                        sports is None or len(sports) <= 7
                    ):
                        family = src[0].version
                        ir = IRRule(
                            target,
                            tag,
                            _new_tuple(AddrMatch, (src, sources_negate, None)),
                            None
                            if dst is None
                            else _new_tuple(AddrMatch, (dst, destinations_negate, None)),
                            in_iface,
                            out_iface,
                            proto,
                            sports,
                            dports,
                            None,
                            states,
                            rate_limit,
                            burst,
                            None,
                            rule_id,
                        )
                        out[family][name].rules.append(ir)
                        if rid is not None:
                            memo[rid] = (rule, ((family, (ir,)),), ())
                        continue
            fms = resolve(rule)
            base = (in_iface, out_iface, states, rate_limit, burst)
            prefix = None
            if log:
                prefix = rule.log_prefix if rule.log_prefix is not None else f"rpt:{rule_id[:8]} "
            made = []
            for fm in fms:
                irs = expand(fm, base, target, tag, rule_id, None, prefix)
                out[fm.family][name].rules.extend(irs)
                made.append((fm.family, tuple(irs)))
            sets_of_rule = tuple(
                sorted(
                    {
                        m.set_name
                        for _, irs in made
                        for ir in irs
                        for m in (ir.src, ir.dst)
                        if m is not None and m.set_name is not None
                    }
                )
            )
            used.update(sets_of_rule)
            if rid is not None:
                memo[rid] = (rule, tuple(made), sets_of_rule)
        direction = {name: chain for chain, name in names.items()}
        for family, chains in out.items():
            before = earlier.chains[family] if earlier is not None else {}
            parts = {}
            for name, chain in chains.items():
                for part in segments(chain, rs_name, direction[name]):
                    same = before.get(part.name)
                    parts[part.name] = (
                        same if same is not None and same.rules == part.rules else part
                    )
            out[family] = parts
        return out

    def _port_list(self, texts: tuple[str, ...]) -> PortRanges | None:
        """`Resolver.port_list`: a single port straight from the document's parsed ports,
        longer lists cached per spelling (many rules name the same ports)."""
        if len(texts) == 1:
            found = self._doc_ports.get(texts[0])
            if found is not None:
                return (found,)
        found = self._ports.get(texts, _UNSET)
        if found is _UNSET:
            found = self._ports[texts] = self.resolver.port_list(texts)
        return found

    # ---- device
    def device(self, device: Device) -> Program:
        rulesets = self.doc.device_rulesets(device)
        tables: dict[tuple[int, str], Table] = {}
        for family in (4, 6):
            tables[(family, "filter")] = self.filter_table(device, rulesets, family)
            tables[(family, "nat")] = self.nat_table(rulesets, family)
        # sorting the keys alone compares strings only (twice as fast as items)
        sets = {name: self.sets[name] for name in sorted(self.sets)}
        return Program(device.name, tables, sets, self.rules)  # (the index sorts them)

    def filter_table(self, device: Device, rulesets: list[RuleSet], family: int) -> Table:
        table = Table(family, "filter")
        rs_chains = [self.ruleset_chains(rs, family) for rs in rulesets]
        for chain in ("input", "forward", "output"):
            main = Chain(f"RPT-{chain.upper()}")
            table.jumps[chain.upper()] = [IRRule(JUMP, "rpt:jump", arg=main.name)]
            table.chains[main.name] = main
            main.rules.extend(self.fixed_rules(device, chain, family))
            for rs, chains in zip(rulesets, rs_chains, strict=True):
                name = ruleset_chain(rs.name, chain)
                if name in chains:
                    main.rules.append(IRRule(JUMP, "rpt:jump", arg=name))
            default = device.default_policy(chain)
            if not (
                chain == "forward" and default == "accept" and self.options.forward_fallthrough
            ):
                main.rules.append(IRRule(_TARGET[default], "rpt:sys:default"))
        for chains in rs_chains:
            for name, chain_obj in chains.items():
                table.chains.setdefault(name, chain_obj)
        return table

    def fixed_rules(self, device: Device, chain: str, family: int) -> list[IRRule]:
        out: list[IRRule] = []
        if device.allow_loopback and chain != "forward":
            iface = {"in_iface": "lo"} if chain == "input" else {"out_iface": "lo"}
            out.append(IRRule(ACCEPT, "rpt:sys:loopback", **iface))
        if device.stateful:
            out.append(IRRule(ACCEPT, "rpt:sys:conntrack", states=("RELATED", "ESTABLISHED")))
            out.append(IRRule(DROP, "rpt:sys:conntrack", states=("INVALID",)))
        if family == 6 and device.default_policy(chain) != "accept":
            out.extend(
                IRRule(ACCEPT, "rpt:sys:icmpv6-nd", proto="icmpv6", icmp_type=t) for t in ND_TYPES
            )
        if chain == "input" and device.management_sources:
            nets = self.resolver.addresses(device.management_sources).get(family)
            if nets:
                ports = merge_ports([(22, 22), (device.agent_port, device.agent_port)])
                fm = FamilyMatch(family, nets, False, None, False, (ProtoSpec("tcp", ports),))
                out.extend(self.expand(fm, _NO_BASE, ACCEPT, "rpt:sys:mgmt", None))
        return out

    def nat_table(self, rulesets: list[RuleSet], family: int) -> Table:
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
                self.rules[rule_id] = RuleInfo(rs.name, index + 1, nat.comment, "nat")
                src = self.resolver.addresses(nat.sources) if nat.sources else None
                dst = self.resolver.addresses(nat.destinations) if nat.destinations else None
                target_fam = None
                if nat.to:
                    target_fam = parse_nat_target(nat.to)[0].version
                if (
                    (src is not None and family not in src)
                    or (dst is not None and family not in dst)
                    or target_fam not in (None, family)
                ):
                    continue
                if nat.protocol == ("icmpv6" if family == 4 else "icmp"):
                    continue
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
                target = {"dnat": DNAT, "snat": SNAT, "masquerade": MASQUERADE}[nat.type]
                builtin = nat.chain.upper()
                main = f"RPT-{builtin}"
                if main not in table.chains:
                    table.chains[main] = Chain(main)
                    table.jumps[builtin] = [IRRule(JUMP, "rpt:jump", arg=main)]
                tag = f"rpt:{rule_id}:{short_hash(repr(nat))}"
                base = (nat.in_interface, nat.out_interface, None, None, None)
                table.chains[main].rules.extend(self.expand(fm, base, target, tag, rule_id, nat.to))
        order = {"RPT-PREROUTING": 0, "RPT-OUTPUT": 1, "RPT-POSTROUTING": 2}
        table.chains = dict(sorted(table.chains.items(), key=lambda kv: order[kv[0]]))
        return table


def lower_device(
    doc: PolicyDocument, device_name: str, options: CompileOptions, now: datetime
) -> Program:
    """The `Program` of one device; `CompileError` if the device is unknown."""
    if device_name not in doc.by_name["devices"]:
        raise CompileError([FieldError(f"devices[{device_name}]", "unknown device")])
    return Lowerer(doc, options, now).device(doc.device(device_name))
