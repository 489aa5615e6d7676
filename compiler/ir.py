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

from .per_source import PerSourceLimit
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
REDIRECT = "REDIRECT"  # DNAT to the device itself; `arg`: the port or range (None: kept)
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
    # `-m hashlimit` (rate_limit_per_source): the limit and its buckets' name, shared by
    # the kernel rules of one policy rule (iptables: the hashlimit table; nft: a dynamic
    # set, per_source.nft_set_name); its LOG twin's differs
    per_source: tuple[PerSourceLimit, str] | None = None
    # `limit`'s bucket when the policy rule's kernel rules share one (rate_limit, and the
    # LOG twin of a rule with one: shared_limit.py); None with `limit`: a bucket per kernel
    # rule (`-m limit`, the compile's default log limit)
    shared_limit: str | None = None
    # a set-lookup rule (set-compiled block, lower/blocks.py): `-m set --match-set NAME
    # flags`; every other match field is then None and the elements name the policy rules
    lookup: LookupSet | None = None


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


# set shape -> (ipset type, dimensions in element order); see docs/compiler.md
# "Set-compiled rule runs". "src"/"dst" are addresses (nets.Net), "dport" a PortElem.
SHAPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "s": ("hash:net", ("src",)),
    "d": ("hash:net", ("dst",)),
    "sp": ("hash:net,port", ("src", "dport")),
    "dp": ("hash:net,port", ("dst", "dport")),
    "hps": ("hash:ip,port,net", ("dst", "dport", "src")),
    "hpd": ("hash:ip,port,net", ("src", "dport", "dst")),
    "hph": ("hash:ip,port,ip", ("dst", "dport", "src")),
    "sd": ("hash:net,net", ("src", "dst")),
    "spd": ("hash:net,port,net", ("src", "dport", "dst")),
}
# the packet field each dimension is looked up by, as ipset's --match-set flags spell it
_FLAG = {"src": "src", "dst": "dst", "dport": "dst"}


class PortElem(NamedTuple):
    """A port dimension's value: protocol (policy spelling) and a port or range."""

    proto: str
    lo: int
    hi: int


class SetElement(NamedTuple):
    """One element of a lookup set: a value per dimension (in `LookupSet.dims` order), and
    the policy rule it stands for (its tag is the element's ipset comment)."""

    values: tuple
    tag: str
    rule_id: str


@dataclass(slots=True)
class LookupSet:
    """The set of one set-lookup rule: the elements of a block's rules of one shape."""

    name: str
    family: int
    shape: str
    elements: list[SetElement] = field(default_factory=list)
    # the renderer's memo (its `add` lines, its size), for sets later compiles reuse
    # through the lowering cache; never part of what the set means
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def kind(self) -> str:
        """The ipset type."""
        return SHAPES[self.shape][0]

    @property
    def dims(self) -> tuple[str, ...]:
        return SHAPES[self.shape][1]

    @property
    def flags(self) -> str:
        """`--match-set` flags: which packet field each dimension is looked up by."""
        return ",".join(_FLAG[d] for d in self.dims)

    @property
    def size(self) -> int:
        """Kernel elements: a port range expands to one element per port."""
        size = self.memo.get("size")
        if size is None:
            i = self.dims.index("dport") if "dport" in self.dims else None
            if i is None:
                size = len(self.elements)
            else:
                ports = [e.values[i] for e in self.elements]  # 40k: ~2 ms, not ~8 as a genexpr
                size = len(ports) + sum([p.hi for p in ports]) - sum([p.lo for p in ports])
            self.memo["size"] = size
        return size


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
    # the sets of set-lookup rules (set-compiled blocks) by name, sorted
    lookups: dict[str, LookupSet] = field(default_factory=dict)
