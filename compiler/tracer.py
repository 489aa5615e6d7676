"""Packet tracer ("what-if"): walk the compiled chains as netfilter does.

It walks the `Program` — the very objects the renderer turns into iptables text — from the
built-in chain through our jump rules, so its answer is what the kernel does with the same
bundle. Two things the kernel knows and a trace cannot: rate limits (a trace assumes the
packet is within the limit) and the state of other firewalls' chains (we assume none).
Time matches (an expiring rule's `--datestop`) are checked against the trace's `now`.

A new connection passes the nat table first (tracer_nat.py): PREROUTING (arriving) or
OUTPUT (locally generated) may rewrite the destination, and a DNAT to another address
re-decides the route — local destination → INPUT, else FORWARD — before the filter table
sees the rewritten packet; POSTROUTING's SNAT/MASQUERADE follows an accepted forward or
output packet (reported; it cannot change the verdict).
"""

from __future__ import annotations

import bisect
import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from . import values as V
from .errors import FamilyMismatch, FieldError, PacketError
from .ir import (
    JUMP,
    LOG,
    REJECT,
    VERDICTS,
    AddrMatch,
    IpSet,
    LookupSet,
    Program,
    Rule,
    SetElement,
    Table,
)
from .lower.static import ND_HOP_LIMIT
from .render_iptables import render_rule
from .tracer_nat import LocalAddresses, NatStep, NatWalker

_START = {"input": "INPUT", "forward": "FORWARD", "output": "OUTPUT"}
PACKET_PROTOCOLS = ("tcp", "udp", "icmp", "icmpv6")
# the hop limit a packet has when none is given, as real senders set it: every neighbour
# discovery message (RFC 4861: ICMPv6 133-137) is sent with 255, anything else with
# Linux's default (net.ipv6.conf.*.hop_limit = 64)
ND_MESSAGES = range(133, 138)
DEFAULT_HOP_LIMIT = 64
# the ICMPv6 messages conntrack leaves untracked (nf_conntrack_proto_icmpv6's
# noct_valid_new): MLD query, report, done and v2 report, router and neighbour
# solicitation and advertisement; a packet of these traced without a state has that one
UNTRACKED_ICMPV6 = frozenset({130, 131, 132, 133, 134, 135, 136, 143})


@dataclass(frozen=True)
class Packet:
    """One packet at one chain of a device."""

    chain: str
    protocol: str
    source: ipaddress.IPv4Address | ipaddress.IPv6Address
    destination: ipaddress.IPv4Address | ipaddress.IPv6Address
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    in_interface: str | None = None
    out_interface: str | None = None
    state: str = "new"
    dnat: bool = False  # the nat table translated the destination (tracer_nat.rewrite)
    # IPv6 only: the hop limit in the header as the chain sees it; None: as a sender sets it
    hop_limit: int | None = None

    @property
    def family(self) -> int:
        return self.source.version

    @property
    def hops(self) -> int | None:
        """The hop limit the kernel's `hl` match reads (None for IPv4, which has a TTL no
        compiled rule matches): the one given, else what a sender writes (`ND_MESSAGES`
        255, so a neighbour solicitation traced without one is the on-link one)."""
        if self.family == 4:
            return None
        if self.hop_limit is not None:
            return self.hop_limit
        if self.protocol == "icmpv6" and self.icmp_type in ND_MESSAGES:
            return ND_HOP_LIMIT
        return DEFAULT_HOP_LIMIT

    @classmethod
    def from_params(cls, params: dict) -> Packet:
        """Build from query-style strings; `PacketError` (a `ValueError`) carrying every
        field error as `.errors`."""
        p = _Params(params)
        chain = p.choice("chain", "input", V.CHAINS)
        protocol = p.choice("protocol", "tcp", PACKET_PROTOCOLS)
        addrs = p.addresses()
        ports = {key: p.port(key, protocol) for key in ("sport", "dport")}
        icmp_type = p.icmp_type(protocol)
        ifaces = {key: p.interface(key) for key in ("in_interface", "out_interface")}
        untracked = protocol == "icmpv6" and icmp_type in UNTRACKED_ICMPV6
        state = p.choice("state", "untracked" if untracked else "new", V.STATES, lower=True)
        hop_limit = p.hop_limit(addrs)
        if p.errors:
            raise PacketError(p.errors)
        return cls(
            chain,
            protocol,
            addrs["source"],
            addrs["destination"],
            ports["sport"],
            ports["dport"],
            icmp_type,
            ifaces["in_interface"],
            ifaces["out_interface"],
            state,
            hop_limit=hop_limit,
        )


class _Params:
    """Query-style packet fields, read one by one; problems go to `errors`."""

    def __init__(self, params: dict) -> None:
        self.params = params
        self.errors: list[FieldError] = []

    def get(self, key: str) -> str | None:
        value = self.params.get(key)
        return None if value in (None, "") else str(value).strip()

    def bad(self, key: str, message: str) -> None:
        self.errors.append(FieldError(key, message))

    def choice(self, key: str, default: str, choices: tuple[str, ...], lower: bool = False) -> str:
        value = self.get(key) or default
        if lower:
            value = value.lower()
        if value not in choices:
            self.bad(key, f"unknown {key} {value!r}: one of {', '.join(choices)}")
        return value

    def addresses(self) -> dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address]:
        addrs = {}
        for key in ("source", "destination"):
            value = self.get(key)
            if value is None:
                self.bad(key, "is required")
                continue
            try:
                addrs[key] = ipaddress.ip_address(value)
            except ValueError:
                self.bad(key, f"invalid address {value!r}")
        if len(addrs) == 2 and addrs["source"].version != addrs["destination"].version:
            self.errors.append(
                FamilyMismatch("destination", "source and destination are of different families")
            )
        return addrs

    def port(self, key: str, protocol: str) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        port = _number(value, 5)
        if port is None or not 0 < port <= 65535:
            self.bad(key, f"invalid port {value!r}: 1-65535")
        elif protocol not in V.PORT_PROTOCOLS:
            self.bad(key, f"ports need protocol tcp or udp, not {protocol}")
        else:
            return port
        return None

    def icmp_type(self, protocol: str) -> int | None:
        value = self.get("icmp_type")
        if value is None:
            return None
        try:
            return V.parse_icmp_type(protocol, value)
        except ValueError as exc:
            self.bad("icmp_type", str(exc))
            return None

    def hop_limit(self, addrs: dict) -> int | None:
        """0-255, IPv6 only: an IPv4 packet has a TTL, which no compiled rule matches, so a
        hop limit given for one would silently change nothing."""
        value = self.get("hop_limit")
        if value is None:
            return None
        hops = _number(value, 3)
        if hops is None or hops > 255:
            self.bad("hop_limit", f"invalid hop limit {value!r}: 0-255")
        elif any(a.version == 4 for a in addrs.values()):
            self.bad("hop_limit", "hop_limit is IPv6's: IPv4 packets have no hop limit")
        else:
            return hops
        return None

    def interface(self, key: str) -> str | None:
        value = self.get(key)
        if value is not None and (value.endswith("+") or not V.INTERFACE_RE.match(value)):
            self.bad(key, f"invalid interface name {value!r}")
        return value


@dataclass(frozen=True)
class Step:
    """One rule the packet matched on its way."""

    chain: str
    index: int
    rule: str
    tag: str

    def to_dict(self) -> dict:
        return {"chain": self.chain, "index": self.index, "rule": self.rule, "tag": self.tag}


@dataclass
class TraceResult:
    verdict: str
    tag: str
    rule_id: str | None
    ruleset: str | None = None
    position: int | None = None
    path: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nat: list[NatStep] = field(default_factory=list)
    # the filter chain walked: the one asked for unless a DNAT re-decided the route
    chain: str | None = None
    # how a reject answers (values.REJECT_WITH, the document's spelling); None otherwise
    reject_with: str | None = None
    # the zones the packet's interfaces are in: {"in_interface": [...], "out_interface": ...}
    zones: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out: dict = {
            "verdict": self.verdict,
            "decided_by": {
                "tag": self.tag,
                "rule_id": self.rule_id,
                "ruleset": self.ruleset,
                "position": self.position,
            },
            "path": [s.to_dict() for s in self.path],
            "notes": self.notes,
            "chain": self.chain,
            "nat": [s.to_dict() for s in self.nat],
        }
        if self.reject_with is not None:
            out["reject_with"] = self.reject_with
        if self.zones:
            out["zones"] = self.zones
        return out


class _SetIndex:
    """Sorted intervals of a big ipset, for O(log n) membership."""

    def __init__(self, ipset_nets) -> None:
        self.starts = [n.first for n in ipset_nets]  # collapsed, so sorted and disjoint
        self.ends = [n.last for n in ipset_nets]

    def __contains__(self, value: int) -> bool:
        i = bisect.bisect_right(self.starts, value) - 1
        return i >= 0 and self.ends[i] >= value


class Tracer:
    """Traces packets through one compiled program (a device's bundle) at time `now`.

    `now` defaults to the time the program was compiled at: a rule with a time match
    (`Rule.until`) matches only a packet traced before its `until`, as in the kernel.
    `local_addresses` (addresses or networks) are the device's own: the NAT exemption's
    addrtype LOCAL test and the route after a DNAT ask whether a destination is one of
    them (loopback always is, and so is the destination of a packet traced at `input`).
    """

    def __init__(
        self,
        program: Program,
        now: datetime | None = None,
        local_addresses: Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
    ):
        self.program = program
        self.now = now if now is not None else program.now
        self.local = LocalAddresses(local_addresses)
        self.nat = NatWalker(program, self.matches)
        self._sets: dict[str, _SetIndex] = {}

    def _in(self, m: AddrMatch, addr) -> bool:
        if m.set_name is not None:
            index = self._sets.get(m.set_name)
            if index is None:
                ipset: IpSet = self.program.sets[m.set_name]
                index = self._sets[m.set_name] = _SetIndex(ipset.nets)
            inside = int(addr) in index
        else:
            inside = addr in m.nets[0]
        return inside != m.negate

    def element(self, lset: LookupSet, p: Packet) -> SetElement | None:
        """The element of a set-compiled block's set that `p` matches (the kernel's
        `--match-set` with the set's flags): it names the policy rule that decided. A
        block's rules are disjoint, so every matching element names the same rule."""
        fields: list = []
        for dim in lset.dims:
            if dim == "dport":
                fields.append((p.protocol, p.dport))
            else:
                fields.append(int(p.source if dim == "src" else p.destination))
        for elem in lset.elements:
            for value, field_ in zip(elem.values, fields, strict=True):
                if isinstance(field_, tuple):
                    proto, port = field_
                    if value.proto != proto or port is None or not value.lo <= port <= value.hi:
                        break
                elif not value.first <= field_ <= value.last:
                    break
            else:
                return elem
        return None

    def matches(self, r: Rule, p: Packet) -> bool:
        if r.lookup is not None:  # a set rule: its set, and its own proto/ports if any
            if p.family != r.lookup.family or self.element(r.lookup, p) is None:
                return False
            if r.proto is None:
                return True
        if r.src is not None and not self._in(r.src, p.source):
            return False
        if r.dst is not None and not self._in(r.dst, p.destination):
            return False
        if r.in_iface is not None and not iface_matches(r.in_iface, p.in_interface):
            return False
        if r.out_iface is not None and not iface_matches(r.out_iface, p.out_interface):
            return False
        if r.proto is not None and not proto_matches(r, p):
            return False
        if r.states is not None and not (
            p.state.upper() in r.states or (p.dnat and "DNAT" in r.states)
        ):
            return False
        if r.dst_type is not None and not self.local.holds(p):  # only "LOCAL" is compiled
            return False
        return r.until is None or self.now is None or self.now < r.until

    def trace(self, packet: Packet) -> TraceResult:
        """The verdict on `packet`, with the NAT steps of a new connection before it and
        the zones its interfaces are in."""
        result = self._trace(packet)
        result.zones = self.zones_of(packet)
        return result

    def zones_of(self, packet: Packet) -> dict[str, list[str]]:
        """The zones (document order) each given interface of `packet` matches, by key."""
        out = {}
        for key in ("in_interface", "out_interface"):
            name = getattr(packet, key)
            found = [
                zone
                for zone, ifaces in self.program.zones.items()
                if any(iface_matches(p, name) for p in ifaces)
            ]
            if found:
                out[key] = found
        return out

    def _trace(self, packet: Packet) -> TraceResult:
        if self.nat.table(packet.family) is None:
            return self.filter(packet)
        if packet.state != "new":
            result = self.filter(packet)
            result.notes.append(
                "state untracked: the nat chains are not traversed (NAT needs conntrack)"
                if packet.state == "untracked"
                else f"state {packet.state}: the nat chains are not traversed (netfilter NATs "
                "a connection's first packet only; conntrack applies the mapping it got then)"
            )
            return result
        hook = "OUTPUT" if packet.chain == "output" else "PREROUTING"
        routed, step, notes = self.nat.hook(hook, packet)
        steps = [step] if step is not None else []
        routed = self._route(packet, routed, notes)
        result = self.filter(routed)
        if result.verdict == "accept" and routed.chain != "input":
            _, step, more = self.nat.hook("POSTROUTING", routed)
            notes += more
            if step is not None:
                steps.append(step)
        result.nat = steps
        result.notes[:0] = notes
        return result

    def _route(self, packet: Packet, routed: Packet, notes: list[str]) -> Packet:
        """The routing decision after PREROUTING: a DNAT to another address sends the
        packet to INPUT if that address is local, else to FORWARD; a locally generated
        packet stays in OUTPUT, and a port-only rewrite keeps the chain asked for."""
        if packet.chain == "output" or routed.destination == packet.destination:
            return routed
        if routed.destination.is_loopback:
            notes.append(
                "DNAT to a loopback address from PREROUTING: IPv4 delivers it only with "
                "net.ipv4.conf.<interface>.route_localnet=1; IPv6 drops it"
            )
        chain = "input" if routed.destination in self.local else "forward"
        if chain == packet.chain:
            return routed
        notes.append(
            f"DNAT to {routed.destination}: "
            + (
                "one of the device's addresses, so the packet is delivered locally (INPUT)"
                if chain == "input"
                else "not one of the device's addresses, so the packet is routed (FORWARD)"
                + ("" if routed.out_interface else "; out_interface unknown (not given)")
            )
        )
        out_iface = None if chain == "input" else routed.out_interface
        return dataclasses.replace(routed, chain=chain, out_interface=out_iface)

    def filter(self, packet: Packet) -> TraceResult:
        """The filter table's verdict on `packet` (at its chain, addresses as given)."""
        table: Table = self.program.tables[(packet.family, "filter")]
        chain, index = _START[packet.chain], 0
        stack: list[tuple[str, int]] = []  # (chain, index) to return to
        path: list[Step] = []
        notes: list[str] = []
        while True:
            rules = table.chain(chain)
            if index >= len(rules):
                if not stack:
                    notes.append(
                        f"fell off built-in chain {chain}: its policy (ACCEPT, never "
                        "changed by Rampart) applies"
                    )
                    return TraceResult(
                        "accept",
                        f"builtin:{chain}",
                        None,
                        path=path,
                        notes=notes,
                        chain=packet.chain,
                    )
                chain, index = stack.pop()
                continue
            rule = rules[index]
            if self.matches(rule, packet):
                tag, rule_id = rule.tag, rule.rule_id
                if rule.lookup is not None:  # a block's set: the element's own rule decided
                    elem = self.element(rule.lookup, packet)
                    assert elem is not None  # matches() found it
                    tag, rule_id = elem.tag, elem.rule_id
                path.append(Step(chain, index + 1, render_rule(chain, rule, packet.family), tag))
                if rule.limit:
                    notes.append(
                        f"{rule.tag} is rate limited ({rule.limit}); assumed within the limit"
                    )
                if rule.per_source is not None:
                    notes.append(
                        f"{rule.tag} is rate limited per source ({rule.per_source[0].rate}); "
                        "assumed within its source's limit"
                    )
                if rule.target == JUMP:
                    assert rule.arg is not None  # a jump always names its chain
                    stack.append((chain, index + 1))
                    chain, index = rule.arg, 0
                    continue
                if rule.target == LOG:
                    notes.append(f"logged with prefix {rule.arg!r}")
                elif rule.target in VERDICTS:
                    info = self.program.rules.get(rule_id) if rule_id else None
                    reject_with = None
                    if rule.target == REJECT:
                        reject_with = rule.arg or V.REJECT_WITH_DEFAULT
                        notes.append(
                            "rejected with " + V.REJECT_WITH_FAMILY[packet.family][reject_with]
                        )
                    return TraceResult(
                        VERDICTS[rule.target],
                        tag,
                        rule_id,
                        info.ruleset if info else None,
                        info.position if info else None,
                        path,
                        notes,
                        chain=packet.chain,
                        reject_with=reject_with,
                    )
            elif rule.hop_limit is not None:
                notes.extend(self._hop_limit_miss(rule, packet))
            index += 1

    def _hop_limit_miss(self, rule: Rule, packet: Packet) -> list[str]:
        """A note when `rule` missed `packet` for its hop limit alone: a routed neighbour
        discovery message (hop limit below 255) is not the system accept's, as in the
        kernel; the note says why the trace went on."""
        if not self.matches(rule, dataclasses.replace(packet, hop_limit=rule.hop_limit)):
            return []
        return [
            f"{rule.tag} not matched: hop limit {packet.hops}, not {rule.hop_limit} (a "
            "neighbour discovery message with another hop limit was routed; RFC 4861)"
        ]


def proto_matches(r: Rule, p: Packet) -> bool:
    """The protocol part of a rule with a protocol: ports, ICMP type, and the hop limit the
    neighbour-discovery accepts carry (`-m hl --hl-eq 255`)."""
    if r.proto != p.protocol:
        return False
    if r.sports is not None and not in_ports(r.sports, p.sport):
        return False
    if r.dports is not None and not in_ports(r.dports, p.dport):
        return False
    if r.icmp_type is not None and r.icmp_type != p.icmp_type:
        return False
    return r.hop_limit is None or r.hop_limit == p.hops


def _number(value: str, digits: int) -> int | None:
    """`value` as a number of at most `digits` ASCII digits (leading zeros aside), else None:
    `str.isdigit` also admits `²`, which int() refuses, and int() refuses over 4300 digits;
    either would be a bare ValueError instead of the field's own message."""
    if not (value.isascii() and value.isdigit()):
        return None
    value = value.lstrip("0") or "0"
    return int(value) if len(value) <= digits else None


def iface_matches(pattern: str, name: str | None) -> bool:
    if name is None:
        return False
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def in_ports(ranges, port: int | None) -> bool:
    return port is not None and any(lo <= port <= hi for lo, hi in ranges)
