"""The neutral chain model between the policy and the iptables syntax (as in Calico Felix).

The renderer turns these objects into `iptables-restore` text and the tracer walks the very
same objects, so what the tracer answers is what the kernel was given. Nothing here knows
iptables spelling; `proto` uses the policy's names (tcp, udp, icmp, icmpv6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from rampart_contract.naming import CHAIN_MAX, CHAIN_PREFIX, SET_MAX, SET_PREFIX

from .resolve import Nets, PortRanges

__all__ = ["CHAIN_MAX", "CHAIN_PREFIX", "SET_MAX", "SET_PREFIX"]

# targets
ACCEPT, DROP, REJECT, LOG, JUMP, DNAT, SNAT, MASQUERADE = (
    "ACCEPT",
    "DROP",
    "REJECT",
    "LOG",
    "JUMP",
    "DNAT",
    "SNAT",
    "MASQUERADE",
)
VERDICTS = {ACCEPT: "accept", DROP: "drop", REJECT: "reject"}
BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "OUTPUT", "POSTROUTING")}


class AddrMatch(NamedTuple):
    """Source or destination: one inline network, or an ipset holding `nets`."""

    nets: Nets
    negate: bool = False
    set_name: str | None = None


@dataclass(slots=True)
class Rule:
    """One kernel rule: every set field must match; then `target` applies.

    Not frozen: a frozen dataclass's __init__ costs twice as much, and 50k rules are built
    per compile. Treat instances as immutable anyway.
    """

    target: str
    tag: str
    src: AddrMatch | None = None
    dst: AddrMatch | None = None
    in_iface: str | None = None
    out_iface: str | None = None
    proto: str | None = None
    sports: PortRanges | None = None
    dports: PortRanges | None = None
    icmp_type: int | None = None
    states: tuple[str, ...] | None = None
    limit: str | None = None
    burst: int | None = None
    arg: str | None = None  # jump chain, log prefix, NAT target or REJECT's reject_with
    rule_id: str | None = None
    # kernel time match: the rule matches only before this whole second (UTC), so an
    # expiring rule leaves the kernel on time without a redeploy (`-m time --datestop`)
    until: datetime | None = None
    # `-m hl --hl-eq`: ICMPv6 neighbour discovery is only valid with hop limit 255 (RFC 4861)
    hop_limit: int | None = None
    # `-m addrtype --dst-type`: LOCAL = addressed to the host itself (the NAT exemption)
    dst_type: str | None = None


@dataclass(slots=True)
class Chain:
    name: str
    rules: list[Rule] = field(default_factory=list)
    # the renderer's memo (family -> text, hash) for a rule-set chain that later compiles
    # reuse through the lowering cache; never part of what the chain means
    memo: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(slots=True)
class Table:
    """One table of one family: jump rules in built-in chains, then the owned chains."""

    family: int
    name: str
    jumps: dict[str, list[Rule]] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)

    def chain(self, name: str) -> list[Rule]:
        """Rules of a built-in or owned chain (built-ins hold only our jump rules)."""
        if name in self.chains:
            return self.chains[name].rules
        return self.jumps.get(name, [])


@dataclass(slots=True)
class IpSet:
    name: str
    family: int
    nets: Nets


class RuleInfo(NamedTuple):
    """Where a compiled rule came from (keyed by rule uuid in the program)."""

    ruleset: str
    position: int
    comment: str
    table: str = "filter"


@dataclass(slots=True)
class Program:
    """The whole compiled policy of one device, before rendering."""

    device: str
    tables: dict[tuple[int, str], Table]
    sets: dict[str, IpSet]
    rules: dict[str, RuleInfo]
    # the time it was compiled at: what the tracer checks time matches against by default
    now: datetime | None = None
    # zone name → its interfaces: the tracer names the zones of a packet's interfaces
    zones: dict[str, tuple[str, ...]] = field(default_factory=dict)
