"""The parts of a policy document (POLICY-FORMAT.md) as immutable values.

Plain data only: the parser (parser.py) builds them, `PolicyDocument` (policy.py) holds
them, serialise.py writes them back as dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from ..per_source import PerSourceLimit

FAMILIES_ALL = frozenset((4, 6))
NAT_TYPES = ("dnat", "snat", "masquerade", "redirect")
NAT_CHAINS = {
    "dnat": ("prerouting", "output"),
    "snat": ("postrouting",),
    "masquerade": ("postrouting",),
    # to the device itself: the incoming interface's address (127.0.0.1/::1 from output)
    "redirect": ("prerouting", "output"),
}
DEFAULT_POLICY = {"input": "drop", "forward": "drop", "output": "accept"}


@dataclass(frozen=True, slots=True)
class AddressObject:
    """A named address, CIDR or range (one family)."""

    name: str
    value: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class AddressGroup:
    """Named members: address names, group names or literals."""

    name: str
    members: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Service:
    """A protocol with its ports or ICMP type."""

    name: str
    protocol: str
    ports: tuple[str, ...] = ()
    icmp_type: str | int | None = None
    description: str = ""
    source_ports: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Zone:
    """Interfaces named once ("dmz") and used for in/out by rules and NAT rules; a rule
    with a zone matches a packet on any of the zone's interfaces ('+' wildcards allowed),
    and, when the zone lists networks, only from (in_zone) or to (out_zone) them."""

    name: str
    interfaces: tuple[str, ...]
    description: str = ""
    # optional: a rule with in_zone matches only sources in these networks, with out_zone
    # only destinations in them (literals: address, CIDR or range); () = any address
    networks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceGroup:
    """Named services or service groups."""

    name: str
    members: tuple[str, ...]
    description: str = ""


class Rule(NamedTuple):
    """One filter rule. A NamedTuple (immutable like the other parts of the document), as
    documents hold tens of thousands of them: built in 0.3 µs where a frozen dataclass
    takes 2 µs."""

    chain: str
    action: str
    id: str | None = None
    sources: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    protocol: str | None = None
    dports: tuple[str, ...] = ()
    sports: tuple[str, ...] = ()
    sources_negate: bool = False
    destinations_negate: bool = False
    in_interface: str | None = None
    out_interface: str | None = None
    states: tuple[str, ...] = ()
    log: bool = False
    log_prefix: str | None = None
    rate_limit: str | None = None
    burst: int | None = None
    comment: str = ""
    enabled: bool = True
    expires_at: datetime | None = None
    icmp_type: str | int | None = None
    # how a reject answers (values.REJECT_WITH); None: port unreachable, as before the key
    reject_with: str | None = None
    # zone names in place of in_interface/out_interface (never both on one side)
    in_zone: str | None = None
    out_zone: str | None = None
    # a token bucket per source address (hashlimit); None: no such limit
    rate_limit_per_source: PerSourceLimit | None = None

    def active(self, now: datetime) -> bool:
        """Enabled and not expired at `now` (expired rules are left out)."""
        return self.enabled and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class NatRule:
    """One dnat/snat/masquerade/redirect rule; `to` is the target as written (for a
    redirect: the local port or port range, or None to keep the port)."""

    type: str
    chain: str
    id: str | None = None
    in_interface: str | None = None
    out_interface: str | None = None
    protocol: str | None = None
    sources: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    dports: tuple[str, ...] = ()
    to: str | None = None
    comment: str = ""
    enabled: bool = True
    # out of the repr, which NAT rule tags hash: tags of rules without zones stay the same
    in_zone: str | None = field(default=None, repr=False)
    out_zone: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Assertion:
    """A packet and the verdict the compiled policy must give it."""

    chain: str
    protocol: str
    source: str
    destination: str
    expect: str
    name: str | None = None
    sport: int | None = None
    dport: int | None = None
    icmp_type: str | int | None = None
    in_interface: str | None = None
    out_interface: str | None = None
    state: str = "new"
    description: str = ""

    def label(self, ruleset: str, index: int) -> str:
        """How reports name the assertion: `<ruleset>.assertions[i] (name)`."""
        return f"{ruleset}.assertions[{index}]" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules in first-match order, with the set's NAT rules and assertions."""

    name: str
    description: str = ""
    rules: tuple[Rule, ...] = ()
    nat: tuple[NatRule, ...] = ()
    assertions: tuple[Assertion, ...] = ()


@dataclass(frozen=True, slots=True)
class Probe:
    """A health check the agent runs after an apply; a failed one rolls the apply back.

    `tcp` connects to host:port, `icmp` sends one echo to host, `http` GETs url and
    expects `expect_status`. `timeout` is in seconds (None: the agent's default, 2 s)."""

    type: str
    host: str | None = None
    port: int | None = None
    url: str | None = None
    expect_status: int | None = None
    timeout: float | None = None

    def to_dict(self) -> dict:
        """The form of the document and of the agent's apply request (unset keys left out)."""
        return {
            k: getattr(self, k)
            for k in ("type", "host", "port", "url", "expect_status", "timeout")
            if getattr(self, k) is not None
        }

    def label(self) -> str:
        """How the agent and the console name the probe: `tcp 198.18.0.1:22`."""
        if self.type == "http":
            return f"http {self.url} {self.expect_status}"
        return f"{self.type} {self.host}" + (f":{self.port}" if self.type == "tcp" else "")


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    """Rule sets shared by the devices of the group, in order, and the health probes its
    devices without their own run after an apply."""

    name: str
    rulesets: tuple[str, ...] = ()
    description: str = ""
    probes: tuple[Probe, ...] = ()


@dataclass(frozen=True, slots=True)
class Device:
    """A firewall: its groups' and own rule sets, defaults and fixed steps."""

    name: str
    address: str | None = None
    agent_port: int = 8745
    groups: tuple[str, ...] = ()
    rulesets: tuple[str, ...] = ()
    default_input: str = "drop"
    default_forward: str = "drop"
    default_output: str = "accept"
    management_sources: tuple[str, ...] = ()
    stateful: bool = True
    allow_loopback: bool = True
    description: str = ""
    probes: tuple[Probe, ...] = ()

    def default_policy(self, chain: str) -> str:
        """The verdict for packets no rule decided in `chain`."""
        return {
            "input": self.default_input,
            "forward": self.default_forward,
            "output": self.default_output,
        }[chain]
