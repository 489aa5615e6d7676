"""NAT in a trace: the nat table's hooks a NEW connection passes, as netfilter does.

Netfilter consults the nat table for the first packet of a connection only; the mapping
it picks there applies to every later packet (conntrack), so only a trace of state `new`
walks these chains. Per hook the first NAT target that matches decides, and a RETURN
(the management exemption, lower/static.nat_exemption) ends the hook with no mapping.

What a trace cannot know is reported rather than guessed: MASQUERADE takes the address of
the outgoing interface (not in the policy), and a port range picks a free port.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import values as V
from .document import parse_nat_target
from .errors import FieldError, PacketError
from .ir import DNAT, JUMP, MASQUERADE, REDIRECT, SNAT, Program, Rule, Table
from .render_iptables import render_rule

if TYPE_CHECKING:  # tracer.py imports this module: the annotation only
    from .tracer import Packet

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
RETURN = "RETURN"
# what each NAT target rewrites
_FIELD = {DNAT: "destination", SNAT: "source", MASQUERADE: "source", REDIRECT: "destination"}
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class NatStep:
    """A NAT rule that decided a hook: what it rewrote, from what to what.

    `target` RETURN is the management exemption: the packet leaves the hook unchanged.
    """

    hook: str
    chain: str
    index: int
    rule: str
    tag: str
    target: str
    field: str
    before: str
    after: str
    rule_id: str | None = None
    ruleset: str | None = None
    position: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def endpoint(address: Address, port: int | None) -> str:
    """`198.18.1.10:80`, `[2001:2::1]:80`, or the address alone when there is no port."""
    if port is None:
        return str(address)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


class LocalAddresses:
    """The device's own addresses: `-m addrtype --dst-type LOCAL` and the routing decision
    ask whether a destination is one of them. Loopback always is; so is the destination of
    a packet traced at `input` (the asker says it is addressed to the device)."""

    def __init__(self, addresses: Iterable[str | Address] = ()) -> None:
        self.nets = [
            *_LOOPBACK,
            *(ipaddress.ip_network(str(a).strip(), strict=False) for a in addresses if a),
        ]

    def __contains__(self, address: Address) -> bool:
        return any(address.version == n.version and address in n for n in self.nets)

    def holds(self, packet: Packet) -> bool:
        """Whether `packet`'s destination is local (the trace's addrtype test)."""
        return packet.chain == "input" or packet.destination in self


def parse_local_addresses(text: str | None, key: str = "local_addresses") -> tuple[str, ...]:
    """Addresses or networks separated by commas or spaces, as the API and the dashboard
    take them; `PacketError` naming `key` for each one that is not an address."""
    items = tuple((text or "").replace(",", " ").split())
    bad = []
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            bad.append(FieldError(key, f"invalid address {item!r}"))
    if bad:
        raise PacketError(bad)
    return items


def _new_port(ports: tuple[int, int] | None, port: int | None) -> int | None:
    """The port a mapping to `ports` gives a connection from/to `port`: kept when inside the
    range (or no range is given), else the range's first (the kernel's pick with no clash)."""
    if ports is None or port is None:
        return port
    lo, hi = ports
    return port if lo <= port <= hi else lo


def rewrite(rule: Rule, packet: Packet) -> tuple[Packet, str, list[str]]:
    """`packet` after the NAT target of `rule`, the new endpoint as shown, and notes."""
    notes: list[str] = []
    if rule.target == MASQUERADE:
        where = f"the address of {rule.out_iface or 'the outgoing interface'}"
        port = f":{packet.sport}" if packet.sport is not None else ""
        notes.append(f"MASQUERADE: the source becomes {where} (not in the policy)")
        return packet, f"<{where}>{port}", notes
    if rule.target == REDIRECT:
        return _redirect(rule, packet, notes)
    assert rule.arg is not None  # DNAT and SNAT always name their target
    address, ports = parse_nat_target(rule.arg)
    if ports is not None and ports[0] != ports[1]:
        notes.append(
            f"{rule.target} to the port range {ports[0]}-{ports[1]}: the original port if "
            "inside it, else the kernel picks a free one (shown: the first)"
        )
    if rule.target == DNAT:
        dport = _new_port(ports, packet.dport)
        after = dataclasses.replace(packet, destination=address, dport=dport, dnat=True)
        return after, endpoint(address, dport), notes
    sport = _new_port(ports, packet.sport)
    after = dataclasses.replace(packet, source=address, sport=sport)
    return after, endpoint(address, sport), notes


def _redirect(rule: Rule, packet: Packet, notes: list[str]) -> tuple[Packet, str, list[str]]:
    """REDIRECT: to the device itself, on the given port (or the packet's own)."""
    ports = V.parse_port(rule.arg) if rule.arg else None
    dport = _new_port(ports, packet.dport)
    local = "127.0.0.1/::1" if packet.chain == "output" else "the incoming interface's address"
    notes.append(
        f"REDIRECT: delivered to the device itself ({local}; the trace keeps the destination "
        f"address as given) on port {dport}"
    )
    chain = packet.chain if packet.chain == "output" else "input"
    out_iface = None if chain == "input" else packet.out_interface
    after = dataclasses.replace(
        packet, dport=dport, chain=chain, out_interface=out_iface, dnat=True
    )
    return after, f"<the device>:{dport}", notes


class NatWalker:
    """Walks one hook of one family's nat table for a new connection."""

    def __init__(self, program: Program, matches: Callable[[Rule, Packet], bool]) -> None:
        self.program = program
        self.matches = matches

    def table(self, family: int) -> Table | None:
        """The family's nat table, if Rampart put any rule in it."""
        table = self.program.tables.get((family, "nat"))
        return table if table is not None and table.chains else None

    def hook(self, hook: str, packet: Packet) -> tuple[Packet, NatStep | None, list[str]]:
        """`packet` after the hook, the step that decided it (None: no rule did), notes."""
        table = self.table(packet.family)
        if table is None:
            return packet, None, []
        chain, index = hook, 0
        stack: list[tuple[str, int]] = []
        while True:
            rules = table.chain(chain)
            if index >= len(rules):
                if not stack:
                    return packet, None, []
                chain, index = stack.pop()
                continue
            rule = rules[index]
            index += 1
            if not self.matches(rule, packet):
                continue
            if rule.target == JUMP:
                assert rule.arg is not None  # a jump always names its chain
                stack.append((chain, index))
                chain, index = rule.arg, 0
            elif rule.target == RETURN:
                if rule.tag == "rpt:sys:mgmt" or not stack:
                    return packet, self._step(hook, chain, index, rule, packet, None, ""), []
                chain, index = stack.pop()
            elif rule.target in _FIELD:
                after, shown, notes = rewrite(rule, packet)
                return after, self._step(hook, chain, index, rule, packet, after, shown), notes

    def _step(
        self,
        hook: str,
        chain: str,
        index: int,
        rule: Rule,
        before: Packet,
        after: Packet | None,
        shown: str,
    ) -> NatStep:
        field = _FIELD.get(rule.target, "destination")
        if field == "source":
            was = endpoint(before.source, before.sport)
        else:
            was = endpoint(before.destination, before.dport)
        info = self.program.rules.get(rule.rule_id) if rule.rule_id else None
        return NatStep(
            hook,
            chain,
            index,
            render_rule(chain, rule, before.family),
            rule.tag,
            rule.target,
            field,
            was,
            shown if after is not None else was,
            rule.rule_id,
            info.ruleset if info else None,
            info.position if info else None,
        )
