"""The fixed steps at the top of `RPT-INPUT`/`RPT-FORWARD`/`RPT-OUTPUT`, before any rule
set: loopback, conntrack, ICMPv6 neighbour discovery, anti-lockout (management access);
and the anti-lockout's counterpart in the nat table (management traffic exempt from NAT)."""

from __future__ import annotations

from ..document import Device
from ..ir import ACCEPT, DROP
from ..ir import Rule as IRRule
from ..resolve import FamilyMatch, ProtoSpec, Resolver, merge_ports
from .expand import Expander

# router solicitation/advertisement, neighbour solicitation/advertisement (RFC 4861): IPv6
# stops working without them; redirect (137) is not needed and is left to the rule sets
ND_TYPES = (133, 134, 135, 136)
# a neighbour discovery message with another hop limit was routed: the host must drop it
ND_HOP_LIMIT = 255
# the chains neighbour discovery is a host's own traffic in (never forwarded)
ND_CHAINS = ("input", "output")
RETURN = "RETURN"
_NO_BASE = (None, None, None, None, None)
_SSH = 22


def fixed_rules(
    device: Device, chain: str, family: int, resolver: Resolver, expander: Expander
) -> list[IRRule]:
    """The device's fixed steps of one chain in one family, in evaluation order."""
    out: list[IRRule] = []
    if device.allow_loopback and chain != "forward":
        if chain == "input":
            out.append(IRRule(ACCEPT, "rpt:sys:loopback", in_iface="lo"))
        else:
            out.append(IRRule(ACCEPT, "rpt:sys:loopback", out_iface="lo"))
    if device.stateful:
        out.append(IRRule(ACCEPT, "rpt:sys:conntrack", states=("RELATED", "ESTABLISHED")))
        out.append(IRRule(DROP, "rpt:sys:conntrack", states=("INVALID",)))
    if family == 6 and chain in ND_CHAINS and device.default_policy(chain) != "accept":
        out.extend(
            IRRule(ACCEPT, "rpt:sys:icmpv6-nd", proto="icmpv6", icmp_type=t, hop_limit=ND_HOP_LIMIT)
            for t in ND_TYPES
        )
    if chain == "input":
        out.extend(_management(device, family, resolver, expander, ACCEPT))
    return out


def nat_exemption(
    device: Device, family: int, resolver: Resolver, expander: Expander
) -> list[IRRule]:
    """The first rules of `RPT-PREROUTING`/`RPT-OUTPUT` in the nat table: management traffic
    to the device itself leaves Rampart's nat chains untouched, so no rule set's DNAT or
    REDIRECT can send the agent port or ssh elsewhere (the filter anti-lockout alone would
    never see such a packet: NAT happens before the filter table decides)."""
    rules = _management(device, family, resolver, expander, RETURN)
    for rule in rules:
        rule.dst_type = "LOCAL"  # just built here: nothing else holds it yet
    return rules


def _management(
    device: Device, family: int, resolver: Resolver, expander: Expander, target: str
) -> list[IRRule]:
    """SSH and the agent's port from the device's management sources, whatever the rule
    sets say, so a policy cannot cut the console off its own device."""
    if not device.management_sources:
        return []
    nets = resolver.addresses(device.management_sources).get(family)
    if not nets:
        return []
    ports = merge_ports([(_SSH, _SSH), (device.agent_port, device.agent_port)])
    fm = FamilyMatch(family, nets, False, None, False, (ProtoSpec("tcp", ports),))
    return expander.expand(fm, _NO_BASE, target, "rpt:sys:mgmt", None)
