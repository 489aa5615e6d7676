"""Packet tracer ("what-if"): walk the compiled chains as netfilter does.

It walks the `Program` — the very objects the renderer turns into iptables text — from the
built-in chain through our jump rules, so its answer is what the kernel does with the same
bundle. Two things the kernel knows and a trace cannot: rate limits (a trace assumes the
packet is within the limit) and the state of other firewalls' chains (we assume none).
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass, field

from . import values as V
from .errors import FieldError
from .ir import JUMP, LOG, VERDICTS, AddrMatch, IpSet, Program, Rule, Table
from .render_iptables import render_rule

_START = {"input": "INPUT", "forward": "FORWARD", "output": "OUTPUT"}
PACKET_PROTOCOLS = ("tcp", "udp", "icmp", "icmpv6")


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

    @property
    def family(self) -> int:
        return self.source.version

    @classmethod
    def from_params(cls, params: dict) -> Packet:
        """Build from query-style strings; `ValueError` carrying `.errors` (FieldError)."""
        errors: list[FieldError] = []

        def bad(key: str, message: str) -> None:
            errors.append(FieldError(key, message))

        def get(key: str) -> str | None:
            value = params.get(key)
            return None if value in (None, "") else str(value).strip()

        chain = get("chain") or "input"
        if chain not in V.CHAINS:
            bad("chain", f"unknown chain {chain!r}: one of {', '.join(V.CHAINS)}")
        protocol = get("protocol") or "tcp"
        if protocol not in PACKET_PROTOCOLS:
            bad("protocol", f"unknown protocol {protocol!r}: one of {', '.join(PACKET_PROTOCOLS)}")
        addrs = {}
        for key in ("source", "destination"):
            value = get(key)
            if value is None:
                bad(key, "is required")
                continue
            try:
                addrs[key] = ipaddress.ip_address(value)
            except ValueError:
                bad(key, f"invalid address {value!r}")
        if len(addrs) == 2 and addrs["source"].version != addrs["destination"].version:
            bad("destination", "source and destination are of different families")
        ports: dict[str, int | None] = {}
        for key in ("sport", "dport"):
            value = get(key)
            ports[key] = None
            if value is None:
                continue
            if not value.isdigit() or not 0 < int(value) <= 65535:
                bad(key, f"invalid port {value!r}: 1-65535")
            elif protocol not in V.PORT_PROTOCOLS:
                bad(key, f"ports need protocol tcp or udp, not {protocol}")
            else:
                ports[key] = int(value)
        icmp_type = None
        if get("icmp_type") is not None:
            try:
                icmp_type = V.parse_icmp_type(protocol, get("icmp_type"))
            except ValueError as exc:
                bad("icmp_type", str(exc))
        ifaces = {}
        for key in ("in_interface", "out_interface"):
            value = get(key)
            ifaces[key] = value
            if value is not None and (value.endswith("+") or not V.INTERFACE_RE.match(value)):
                bad(key, f"invalid interface name {value!r}")
        state = (get("state") or "new").lower()
        if state not in V.STATES:
            bad("state", f"unknown state {state!r}: one of {', '.join(V.STATES)}")
        if errors:
            exc = ValueError("; ".join(str(e) for e in errors))
            exc.errors = errors  # type: ignore[attr-defined]
            raise exc
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
        )


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

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "decided_by": {
                "tag": self.tag,
                "rule_id": self.rule_id,
                "ruleset": self.ruleset,
                "position": self.position,
            },
            "path": [s.to_dict() for s in self.path],
            "notes": self.notes,
        }


class _SetIndex:
    """Sorted intervals of a big ipset, for O(log n) membership."""

    def __init__(self, ipset_nets) -> None:
        self.starts = [n.first for n in ipset_nets]  # collapsed, so sorted and disjoint
        self.ends = [n.last for n in ipset_nets]

    def __contains__(self, value: int) -> bool:
        i = bisect.bisect_right(self.starts, value) - 1
        return i >= 0 and self.ends[i] >= value


class Tracer:
    """Traces packets through one compiled program (a device's bundle)."""

    def __init__(self, program: Program):
        self.program = program
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

    def matches(self, r: Rule, p: Packet) -> bool:
        if r.src is not None and not self._in(r.src, p.source):
            return False
        if r.dst is not None and not self._in(r.dst, p.destination):
            return False
        if r.in_iface is not None and not iface_matches(r.in_iface, p.in_interface):
            return False
        if r.out_iface is not None and not iface_matches(r.out_iface, p.out_interface):
            return False
        if r.proto is not None:
            if r.proto != p.protocol:
                return False
            if r.sports is not None and not in_ports(r.sports, p.sport):
                return False
            if r.dports is not None and not in_ports(r.dports, p.dport):
                return False
            if r.icmp_type is not None and r.icmp_type != p.icmp_type:
                return False
        return not (r.states is not None and p.state.upper() not in r.states)

    def trace(self, packet: Packet) -> TraceResult:
        table: Table = self.program.tables[(packet.family, "filter")]
        chain, index, stack = _START[packet.chain], 0, []
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
                    return TraceResult("accept", f"builtin:{chain}", None, path=path, notes=notes)
                chain, index = stack.pop()
                continue
            rule = rules[index]
            if self.matches(rule, packet):
                path.append(
                    Step(chain, index + 1, render_rule(chain, rule, packet.family), rule.tag)
                )
                if rule.limit:
                    notes.append(
                        f"{rule.tag} is rate limited ({rule.limit}); assumed within the limit"
                    )
                if rule.target == JUMP:
                    stack.append((chain, index + 1))
                    chain, index = rule.arg, 0
                    continue
                if rule.target == LOG:
                    notes.append(f"logged with prefix {rule.arg!r}")
                elif rule.target in VERDICTS:
                    info = self.program.rules.get(rule.rule_id) if rule.rule_id else None
                    return TraceResult(
                        VERDICTS[rule.target],
                        rule.tag,
                        rule.rule_id,
                        info.ruleset if info else None,
                        info.position if info else None,
                        path,
                        notes,
                    )
            index += 1


def iface_matches(pattern: str, name: str | None) -> bool:
    if name is None:
        return False
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def in_ports(ranges, port: int | None) -> bool:
    return port is not None and any(lo <= port <= hi for lo, hi in ranges)
