"""The policy document of POLICY-FORMAT.md as plain, validated dataclasses.

The database (through `rules.selectors.policy_dict`), YAML files and CI all hand the
compiler the same dict form, and this module is the one parser of it: unknown keys,
bad names, duplicate names, unknown references, group cycles, mixed-family rules and ports
where no ports can be are all reported here, each with a path such as
`rulesets[web-baseline].rules[3].dports[0]` (list indices are 0-based) and the rule's id.
`to_dict()` gives the canonical form, so `from_dict(to_dict(doc)) == doc`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import NamedTuple

from . import nets as N
from . import values as V
from .errors import DocumentError, FieldError
from .gcpause import gc_paused

FAMILIES_ALL = frozenset((4, 6))
NAT_TYPES = ("dnat", "snat", "masquerade")
NAT_CHAINS = {
    "dnat": ("prerouting", "output"),
    "snat": ("postrouting",),
    "masquerade": ("postrouting",),
}
DEFAULT_POLICY = {"input": "drop", "forward": "drop", "output": "accept"}
FALLBACK_NS = uuid.UUID("6f1d2c1e-55a4-4c43-9a43-5f0c0de0a11a")
_FALLBACK_NS_BYTES = FALLBACK_NS.bytes


def parse_literal(text: str) -> tuple[N.Net, ...]:
    """An address literal as CIDR blocks (`ValueError` worded as in values.py)."""
    return N.parse(text)


def fallback_rule_id(ruleset: str, kind: str, index: int) -> str:
    """A stable id for a rule without `id`, derived from where it is.

    The same value as `uuid.uuid5(FALLBACK_NS, ...)`, spelled out because the uuid module
    takes ~20 µs a call and a 50k-rule policy needs 50k of them.
    """
    h = hashlib.sha1(_FALLBACK_NS_BYTES + f"{ruleset}/{kind}/{index}".encode()).hexdigest()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def fallback_ids(ruleset: str, kind: str) -> Callable[[int], str]:
    """`fallback_rule_id(ruleset, kind, index)` as a function of index: the hash state of
    the common prefix is computed once (the compiler needs one id per rule)."""
    prefix = hashlib.sha1(_FALLBACK_NS_BYTES + f"{ruleset}/{kind}/".encode())

    def rule_id(index: int) -> str:
        digest = prefix.copy()
        digest.update(b"%d" % index)
        h = digest.hexdigest()
        return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"

    return rule_id


@dataclass(frozen=True, slots=True)
class AddressObject:
    name: str
    value: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class AddressGroup:
    name: str
    members: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    protocol: str
    ports: tuple[str, ...] = ()
    icmp_type: str | int | None = None
    description: str = ""
    source_ports: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceGroup:
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

    def active(self, now: datetime) -> bool:
        """Enabled and not expired at `now` (expired rules are left out)."""
        return self.enabled and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class NatRule:
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


@dataclass(frozen=True, slots=True)
class Assertion:
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
        return f"{ruleset}.assertions[{index}]" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True, slots=True)
class RuleSet:
    name: str
    description: str = ""
    rules: tuple[Rule, ...] = ()
    nat: tuple[NatRule, ...] = ()
    assertions: tuple[Assertion, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    name: str
    rulesets: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class Device:
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

    def default_policy(self, chain: str) -> str:
        return {
            "input": self.default_input,
            "forward": self.default_forward,
            "output": self.default_output,
        }[chain]


@dataclass(frozen=True)
class PolicyDocument:
    """A whole validated policy document; lookups by name are prepared once."""

    version: int = 1
    addresses: tuple[AddressObject, ...] = ()
    address_groups: tuple[AddressGroup, ...] = ()
    services: tuple[Service, ...] = ()
    service_groups: tuple[ServiceGroup, ...] = ()
    rulesets: tuple[RuleSet, ...] = ()
    device_groups: tuple[DeviceGroup, ...] = ()
    devices: tuple[Device, ...] = ()
    prune: bool | None = None
    by_name: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    # address literals parsed while validating, reused by the resolver
    literals: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    ports: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for kind in (
            "addresses",
            "address_groups",
            "services",
            "service_groups",
            "rulesets",
            "device_groups",
            "devices",
        ):
            self.by_name[kind] = {o.name: o for o in getattr(self, kind)}

    def ruleset(self, name: str) -> RuleSet:
        return self.by_name["rulesets"][name]

    def device(self, name: str) -> Device:
        return self.by_name["devices"][name]

    def device_rulesets(self, device: Device) -> list[RuleSet]:
        """The device's rule sets in evaluation order: groups' (in order), then its own."""
        names: list[str] = []
        for group in device.groups:
            names.extend(self.by_name["device_groups"][group].rulesets)
        names.extend(device.rulesets)
        return [self.ruleset(n) for n in names]

    @classmethod
    def from_dict(cls, data: object) -> PolicyDocument:
        """Validate and build; raises `DocumentError` with every problem found."""
        with gc_paused():  # many small objects, no cycles
            return _Parser().document(data)

    def to_dict(self) -> dict:
        """The canonical dict form (defaults and empty values left out)."""
        out: dict = {"version": self.version}
        if self.prune is not None:
            out["prune"] = self.prune
        out["addresses"] = [
            _compact({"name": a.name, "value": a.value, "description": a.description})
            for a in self.addresses
        ]
        out["address_groups"] = [
            _compact(
                {"name": g.name, "members": list(g.members), "description": g.description},
                keep=("members",),
            )
            for g in self.address_groups
        ]
        out["services"] = [
            _compact(
                {
                    "name": s.name,
                    "protocol": s.protocol,
                    "ports": list(s.ports),
                    "source_ports": list(s.source_ports),
                    "icmp_type": s.icmp_type,
                    "description": s.description,
                }
            )
            for s in self.services
        ]
        out["service_groups"] = [
            _compact(
                {"name": g.name, "members": list(g.members), "description": g.description},
                keep=("members",),
            )
            for g in self.service_groups
        ]
        out["rulesets"] = [_ruleset_dict(rs) for rs in self.rulesets]
        out["device_groups"] = [
            _compact({"name": g.name, "rulesets": list(g.rulesets), "description": g.description})
            for g in self.device_groups
        ]
        out["devices"] = [_device_dict(d) for d in self.devices]
        return {k: v for k, v in out.items() if v != [] or k == "version"}


def _compact(data: dict, keep: tuple[str, ...] = ()) -> dict:
    return {
        k: v
        for k, v in data.items()
        if k in keep or not (v is None or v == "" or v == [] or v is False)
    }


def format_datetime(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def rule_dict(rule: Rule) -> dict:
    data = _compact(
        {
            "id": rule.id,
            "chain": rule.chain,
            "action": rule.action,
            "sources": list(rule.sources),
            "destinations": list(rule.destinations),
            "services": list(rule.services),
            "protocol": rule.protocol,
            "dports": list(rule.dports),
            "sports": list(rule.sports),
            "icmp_type": rule.icmp_type,
            "sources_negate": rule.sources_negate,
            "destinations_negate": rule.destinations_negate,
            "in_interface": rule.in_interface,
            "out_interface": rule.out_interface,
            "states": list(rule.states),
            "log": rule.log,
            "log_prefix": rule.log_prefix,
            "rate_limit": rule.rate_limit,
            "burst": rule.burst,
            "comment": rule.comment,
            "expires_at": format_datetime(rule.expires_at) if rule.expires_at else None,
        }
    )
    if not rule.enabled:
        data["enabled"] = False
    return data


def _ruleset_dict(rs: RuleSet) -> dict:
    out = _compact({"name": rs.name, "description": rs.description})
    out["rules"] = [rule_dict(r) for r in rs.rules]
    if rs.nat:
        out["nat"] = []
        for n in rs.nat:
            item = _compact(
                {
                    "id": n.id,
                    "type": n.type,
                    "chain": n.chain,
                    "in_interface": n.in_interface,
                    "out_interface": n.out_interface,
                    "protocol": n.protocol,
                    "sources": list(n.sources),
                    "destinations": list(n.destinations),
                    "dports": list(n.dports),
                    "to": n.to,
                    "comment": n.comment,
                }
            )
            if not n.enabled:
                item["enabled"] = False
            out["nat"].append(item)
    if rs.assertions:
        out["assertions"] = [
            _compact(
                {
                    "name": a.name,
                    "chain": a.chain,
                    "protocol": a.protocol,
                    "source": a.source,
                    "destination": a.destination,
                    "sport": a.sport,
                    "dport": a.dport,
                    "icmp_type": a.icmp_type,
                    "in_interface": a.in_interface,
                    "out_interface": a.out_interface,
                    "state": None if a.state == "new" else a.state,
                    "expect": a.expect,
                    "description": a.description,
                }
            )
            for a in rs.assertions
        ]
    return out


def _device_dict(d: Device) -> dict:
    out = _compact({"name": d.name, "address": d.address, "description": d.description})
    out["agent_port"] = d.agent_port
    out.update(_compact({"groups": list(d.groups), "rulesets": list(d.rulesets)}))
    out["default_policy"] = {
        "input": d.default_input,
        "forward": d.default_forward,
        "output": d.default_output,
    }
    if d.management_sources:
        out["management_sources"] = list(d.management_sources)
    out["stateful"] = d.stateful
    out["allow_loopback"] = d.allow_loopback
    return out


# --------------------------------------------------------------------------- parsing

_TOP_KEYS = {
    "version",
    "prune",
    "addresses",
    "address_groups",
    "services",
    "service_groups",
    "rulesets",
    "device_groups",
    "devices",
}
_RULE_KEYS = {
    "id",
    "chain",
    "action",
    "sources",
    "destinations",
    "services",
    "protocol",
    "dports",
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
    "comment",
    "enabled",
    "expires_at",
    "icmp_type",
}
_NAT_KEYS = {
    "id",
    "type",
    "chain",
    "in_interface",
    "out_interface",
    "protocol",
    "sources",
    "destinations",
    "dports",
    "to",
    "comment",
    "enabled",
}
_ASSERT_KEYS = {
    "name",
    "chain",
    "protocol",
    "source",
    "destination",
    "sport",
    "dport",
    "icmp_type",
    "in_interface",
    "out_interface",
    "state",
    "expect",
    "description",
}
_DEVICE_KEYS = {
    "name",
    "address",
    "agent_port",
    "groups",
    "rulesets",
    "default_policy",
    "management_sources",
    "stateful",
    "allow_loopback",
    "description",
}
_MISSING = object()
_PLAIN_RULE_KEYS = frozenset(
    (
        "id",
        "chain",
        "action",
        "sources",
        "destinations",
        "protocol",
        "dports",
        "sports",
        "comment",
        "enabled",
        "sources_negate",
        "destinations_negate",
    )
)
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_CHAIN_SET = frozenset(V.CHAINS)
_ACTION_SET = frozenset(V.ACTIONS)
_PROTOCOL_SET = frozenset(V.PROTOCOLS)
_PORT_PROTOCOL_SET = frozenset(V.PORT_PROTOCOLS)
_FAMILY_BITS = {frozenset(): 0, frozenset((4,)): 1, frozenset((6,)): 2, frozenset((4, 6)): 3}


class _RulePath(NamedTuple):
    """`rulesets[x].rules[3]`, spelled out only when a message needs it."""

    ruleset_path: str
    index: int

    def __str__(self) -> str:
        return f"{self.ruleset_path}.rules[{self.index}]"


def protocol_families(protocol: str | None) -> frozenset[int]:
    if protocol == "icmp":
        return frozenset((4,))
    if protocol == "icmpv6":
        return frozenset((6,))
    return FAMILIES_ALL


def parse_nat_target(
    text: str,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, tuple[int, int] | None]:
    """`198.18.1.10`, `198.18.1.10:8080`, `[2001:2::1]:8080-8090` → (address, ports)."""
    text = str(text).strip()
    port: str | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"invalid NAT target {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"invalid NAT target {text!r}: use ADDRESS, ADDRESS:PORT or [IPv6]:PORT"
        ) from None
    return address, V.parse_port(port) if port is not None else None


class _Parser:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.addr_families: dict[str, frozenset[int]] = {}
        self.group_members: dict[str, tuple[str, ...]] = {}
        self.service_protocols: dict[str, frozenset[str]] = {}
        self.svcgroup_members: dict[str, tuple[str, ...]] = {}
        self.rule_ids: dict[str, str] = {}
        self.group_fams: dict[str, frozenset[int]] = {}
        self.cycles: set[frozenset[str]] = set()
        self.literals: dict[str, tuple[N.Net, ...]] = {}
        self.ports: dict[str, tuple[int, int]] = {}

    def port(self, text: str) -> tuple[int, int]:
        found = self.ports.get(text)
        if found is None:
            found = self.ports[text] = V.parse_port(text)
        return found

    def lit(self, text: str) -> tuple[N.Net, ...]:
        """Parse (and remember) an address literal."""
        found = self.literals.get(text)
        if found is None:
            found = self.literals[text] = N.parse(text)
        return found

    # ---- small helpers
    def err(self, path: str, message: str, rule_id: str | None = None) -> None:
        self.errors.append(FieldError(path, message, rule_id))

    def mapping(
        self,
        data: object,
        path: str,
        allowed: set[str],
        required: Iterable[str] = (),
        rule_id: str | None = None,
    ) -> dict | None:
        if not isinstance(data, dict):
            self.err(path or "document", "must be a mapping", rule_id)
            return None
        for key in sorted(set(map(str, data)) - allowed):
            self.err(f"{path}.{key}" if path else key, "unknown key", rule_id)
        for key in required:
            if data.get(key) is None:
                self.err(f"{path}.{key}" if path else key, "is required", rule_id)
        return data

    def items(self, data: dict, key: str, path: str) -> list:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.err(f"{path}.{key}" if path else key, "must be a list")
            return []
        return value

    def str_list(self, data: dict, key: str, path: str, rule_id: str | None = None) -> tuple:
        value = data.get(key)
        if value is None:
            return ()
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            self.err(f"{path}.{key}", "must be a list", rule_id)
            return ()
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                self.err(f"{path}.{key}[{i}]", "must be a string", rule_id)
            else:
                out.append(str(item).strip())
        return tuple(out)

    def text(
        self, data: dict, key: str, path: str, rule_id: str | None = None, limit: int = 1000
    ) -> str:
        value = data.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.err(f"{path}.{key}", "must be a string", rule_id)
            return ""
        if len(value) > limit:
            self.err(f"{path}.{key}", f"at most {limit} characters", rule_id)
        return value

    def boolean(
        self, data: dict, key: str, path: str, default: bool, rule_id: str | None = None
    ) -> bool:
        value = data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.err(f"{path}.{key}", "must be true or false", rule_id)
            return default
        return value

    def choice(
        self,
        data: dict,
        key: str,
        path: str,
        choices: tuple[str, ...],
        what: str,
        rule_id: str | None = None,
        default: str | None = None,
    ) -> str | None:
        value = data.get(key, default)
        if value is None:
            return None
        try:
            return V.parse_choice(value, choices, what)
        except ValueError as exc:
            self.err(f"{path}.{key}", str(exc), rule_id)
            return None

    def call(self, fn, value, path: str, rule_id: str | None = None):
        try:
            return fn(value)
        except (ValueError, TypeError) as exc:
            self.err(path, str(exc), rule_id)
            return _MISSING

    def named(self, entries: list, kind: str) -> list[tuple[str, dict, str]]:
        """(name, item, path) of well-formed entries, flagging bad and duplicate names."""
        seen: set[str] = set()
        out = []
        for i, item in enumerate(entries):
            name = item.get("name") if isinstance(item, dict) else None
            path = f"{kind}[{name}]" if isinstance(name, str) and name else f"{kind}[{i}]"
            if not isinstance(item, dict):
                self.err(path, "must be a mapping")
                continue
            if self.call(V.validate_name, name, f"{path}.name") is _MISSING:
                continue
            if name in seen:
                self.err(path, f"duplicate name {name!r} among {kind}")
                continue
            seen.add(name)
            out.append((name, item, path))
        return out

    # ---- the document
    def document(self, data: object) -> PolicyDocument:
        top = self.mapping(data, "", _TOP_KEYS)
        if top is None:
            raise DocumentError(self.errors)
        version = top.get("version", 1)
        if version != 1:
            self.err("version", "unsupported version: only 1 is known")
        prune = top.get("prune")
        if prune is not None and not isinstance(prune, bool):
            self.err("prune", "must be true or false")
            prune = None
        addresses = self.addresses(self.items(top, "addresses", ""))
        groups = self.address_groups(self.items(top, "address_groups", ""))
        services = self.services(self.items(top, "services", ""))
        sgroups = self.service_groups(self.items(top, "service_groups", ""))
        rulesets = [
            self.ruleset(n, item, p)
            for n, item, p in self.named(self.items(top, "rulesets", ""), "rulesets")
        ]
        rs_names = {rs.name for rs in rulesets}
        dgroups = self.device_groups(self.items(top, "device_groups", ""), rs_names)
        devices = self.devices(self.items(top, "devices", ""), rs_names, {g.name for g in dgroups})
        if self.errors:
            raise DocumentError(self.errors)
        doc = PolicyDocument(
            1,
            tuple(addresses),
            tuple(groups),
            tuple(services),
            tuple(sgroups),
            tuple(rulesets),
            tuple(dgroups),
            tuple(devices),
            prune,
        )
        doc.literals.update(self.literals)
        doc.ports.update(self.ports)
        return doc

    def addresses(self, entries: list) -> list[AddressObject]:
        out = []
        for name, item, path in self.named(entries, "addresses"):
            if self.mapping(item, path, {"name", "value", "description"}, ("value",)) is None:
                continue
            value = item.get("value")
            parsed = self.call(self.lit, str(value).strip(), f"{path}.value")
            if value is None or parsed is _MISSING:
                continue
            self.addr_families[name] = frozenset((parsed[0].version,))
            out.append(
                AddressObject(name, str(value).strip(), self.text(item, "description", path))
            )
        return out

    def address_groups(self, entries: list) -> list[AddressGroup]:
        out = []
        named = self.named(entries, "address_groups")
        for name, item, path in named:
            if name in self.addr_families:
                self.err(path, f"{name!r} is already the name of an address")
            self.mapping(item, path, {"name", "members", "description"})
            members = self.str_list(item, "members", path)
            self.group_members[name] = members
            out.append(AddressGroup(name, members, self.text(item, "description", path)))
        # members: names or literals; then families with cycle detection
        for name, _item, path in named:
            for i, member in enumerate(self.group_members.get(name, ())):
                if member in self.addr_families or member in self.group_members:
                    continue
                self.call(self.lit, member, f"{path}.members[{i}]")
        for name, _item, path in named:
            self.group_family(name, path, ())
        self.addr_families.update(self.group_fams)
        return out

    def group_family(self, name: str, path: str, stack: tuple[str, ...]) -> frozenset[int]:
        if name in self.group_fams:
            return self.group_fams[name]
        if name not in self.group_members:
            return self.addr_families.get(name, frozenset())
        if name in stack:
            cycle = stack[stack.index(name) :] + (name,)
            if frozenset(cycle) not in self.cycles:
                self.cycles.add(frozenset(cycle))
                self.err(path, "address group cycle: " + " -> ".join(cycle))
            return frozenset()
        fams: set[int] = set()
        for member in self.group_members[name]:
            if member in self.group_members or member in self.addr_families:
                fams |= self.group_family(member, path, stack + (name,))
            else:
                found = self.literals.get(member)
                if found:
                    fams.add(found[0].version)
        self.group_fams[name] = frozenset(fams)
        return self.group_fams[name]

    def services(self, entries: list) -> list[Service]:
        out = []
        for name, item, path in self.named(entries, "services"):
            if (
                self.mapping(
                    item,
                    path,
                    {"name", "protocol", "ports", "source_ports", "icmp_type", "description"},
                    ("protocol",),
                )
                is None
            ):
                continue
            protocol = self.choice(item, "protocol", path, V.PROTOCOLS, "protocol")
            ports = self.str_list(item, "ports", path)
            sports = self.str_list(item, "source_ports", path)
            for key, values in (("ports", ports), ("source_ports", sports)):
                for i, p in enumerate(values):
                    self.call(self.port, p, f"{path}.{key}[{i}]")
                if protocol and values and protocol not in V.PORT_PROTOCOLS:
                    self.err(f"{path}.{key}", f"ports need protocol tcp or udp, not {protocol}")
            icmp_type = item.get("icmp_type")
            if icmp_type is not None and protocol:
                self.call(
                    lambda v, p=protocol: V.parse_icmp_type(p, v), icmp_type, f"{path}.icmp_type"
                )
            if protocol is None:
                continue
            self.service_protocols[name] = frozenset((protocol,))
            out.append(
                Service(
                    name, protocol, ports, icmp_type, self.text(item, "description", path), sports
                )
            )
        return out

    def service_groups(self, entries: list) -> list[ServiceGroup]:
        out = []
        named = self.named(entries, "service_groups")
        for name, item, path in named:
            if name in self.service_protocols:
                self.err(path, f"{name!r} is already the name of a service")
            self.mapping(item, path, {"name", "members", "description"})
            self.svcgroup_members[name] = self.str_list(item, "members", path)
            out.append(
                ServiceGroup(
                    name, self.svcgroup_members[name], self.text(item, "description", path)
                )
            )
        for name, _item, path in named:
            for i, member in enumerate(self.svcgroup_members[name]):
                if member not in self.service_protocols and member not in self.svcgroup_members:
                    self.err(f"{path}.members[{i}]", f"unknown service {member!r}")
            self.service_group_protocols(name, path, ())
        return out

    def service_group_protocols(
        self, name: str, path: str, stack: tuple[str, ...]
    ) -> frozenset[str]:
        if name in stack:
            cycle = stack[stack.index(name) :] + (name,)
            if frozenset(cycle) not in self.cycles:
                self.cycles.add(frozenset(cycle))
                self.err(path, "service group cycle: " + " -> ".join(cycle))
            return frozenset()
        if name in self.service_protocols and name not in self.svcgroup_members:
            return self.service_protocols[name]
        protos: set[str] = set()
        for member in self.svcgroup_members.get(name, ()):
            if member in self.svcgroup_members:
                protos |= self.service_group_protocols(member, path, stack + (name,))
            else:
                protos |= self.service_protocols.get(member, frozenset())
        if not stack:
            self.service_protocols[name] = frozenset(protos)
        return frozenset(protos)

    def address_refs(
        self, refs: tuple[str, ...], path: str, key: str, rule_id: str | None
    ) -> frozenset[int] | None:
        """Families of the referenced addresses (None when `refs` is empty = any)."""
        if not refs:
            return None
        fams: set[int] = set()
        for i, ref in enumerate(refs):
            if ref in self.addr_families:
                fams |= self.addr_families[ref]
                continue
            try:
                fams.add(self.lit(ref)[0].version)
            except ValueError:
                self.err(
                    f"{path}.{key}[{i}]",
                    f"unknown reference {ref!r}: not an address, address group or address literal",
                    rule_id,
                )
                return _MISSING  # type: ignore[return-value]
        return frozenset(fams)

    def interfaces(
        self,
        item: dict,
        path: str,
        chain: str | None,
        rule_id: str | None,
        allowed_in: tuple[str, ...],
        allowed_out: tuple[str, ...],
    ) -> tuple[str | None, str | None]:
        result = []
        for key, allowed in (("in_interface", allowed_in), ("out_interface", allowed_out)):
            value = item.get(key)
            if value is None:
                result.append(None)
                continue
            if (
                self.call(
                    V.parse_interface,
                    value if isinstance(value, str) else "",
                    f"{path}.{key}",
                    rule_id,
                )
                is _MISSING
            ):
                result.append(None)
                continue
            if chain and chain not in allowed:
                self.err(f"{path}.{key}", f"{key} cannot be matched in chain {chain}", rule_id)
            result.append(value)
        return result[0], result[1]

    def rule_id(self, item: dict, path: str) -> str | None:
        value = item.get("id")
        if value is None:
            return None
        try:
            rid = str(uuid.UUID(str(value)))
        except ValueError:
            self.err(f"{path}.id", f"invalid id {value!r}: must be a UUID")
            return None
        if rid in self.rule_ids:
            self.err(f"{path}.id", f"duplicate rule id (also {self.rule_ids[rid]})", rid)
        self.rule_ids[rid] = path
        return rid

    def ruleset(self, name: str, item: dict, path: str) -> RuleSet:
        self.mapping(item, path, {"name", "description", "rules", "nat", "assertions"})
        fast = self.plain_rule
        rules = [
            rule
            if (rule := fast(r, path, i)) is not _MISSING
            else self.rule(r, f"{path}.rules[{i}]")
            for i, r in enumerate(self.items(item, "rules", path))
        ]
        nat = [self.nat(r, f"{path}.nat[{i}]") for i, r in enumerate(self.items(item, "nat", path))]
        asserts = [
            self.assertion(a, f"{path}.assertions[{i}]")
            for i, a in enumerate(self.items(item, "assertions", path))
        ]
        return RuleSet(
            name,
            self.text(item, "description", path),
            tuple(r for r in rules if r),
            tuple(n for n in nat if n),
            tuple(a for a in asserts if a),
        )

    def plain_rule(self, item: object, ruleset_path: str, index: int) -> Rule | object:
        """`rule()` for the plain shape most rules have, ~3x faster; `_MISSING` for any
        other rule, and for any rule with a problem, which `rule()` then parses and reports.

        Plain: only the keys in `_PLAIN_RULE_KEYS`, given in their canonical form (as the
        database and `to_dict()` write them): a lowercase UUID, exact choice values,
        lists of strings, booleans. It accepts exactly what `rule()` accepts and builds the
        same `Rule` (a property test compares the two on random rules, valid or not).
        """
        if type(item) is not dict or not item.keys() <= _PLAIN_RULE_KEYS:
            return _MISSING
        get = item.get
        rid = get("id")
        if rid is not None and (
            type(rid) is not str or _UUID_RE.match(rid) is None or rid in self.rule_ids
        ):
            return _MISSING
        chain, action, protocol = get("chain"), get("action"), get("protocol")
        if (
            type(chain) is not str
            or type(action) is not str
            or chain not in _CHAIN_SET
            or action not in _ACTION_SET
            or protocol is not None
            and (type(protocol) is not str or protocol not in _PROTOCOL_SET)
        ):
            return _MISSING
        families = []
        sides = []
        for key in ("sources", "destinations"):
            refs = get(key)
            if refs is None:
                families.append(None)
                sides.append(())
                continue
            if type(refs) is not list:
                return _MISSING
            fams = 0  # bit 1: IPv4, bit 2: IPv6
            out = []
            for ref in refs:
                if type(ref) is not str:
                    return _MISSING
                ref = ref.strip()
                known = self.addr_families.get(ref)
                if known is not None:
                    fams |= _FAMILY_BITS[known]
                else:
                    try:
                        fams |= 1 if self.lit(ref)[0].version == 4 else 2
                    except ValueError:
                        return _MISSING
                out.append(ref)
            families.append(fams if out else None)
            sides.append(tuple(out))
        ports = []
        for key in ("dports", "sports"):
            given = get(key)
            if given is None:
                ports.append(())
                continue
            if type(given) is not list:
                return _MISSING
            out = []
            for text in given:
                if type(text) is not str:
                    return _MISSING
                text = text.strip()
                if text not in self.ports:
                    try:
                        self.port(text)
                    except (ValueError, TypeError):
                        return _MISSING
                out.append(text)
            ports.append(tuple(out))
        dports, sports = ports
        if (dports or sports) and protocol not in _PORT_PROTOCOL_SET:
            return _MISSING
        src_f, dst_f = families
        if src_f is not None and dst_f is not None and not src_f & dst_f:
            return _MISSING
        addr_f = (3 if src_f is None else src_f) & (3 if dst_f is None else dst_f)
        if protocol == "icmp" and not addr_f & 1 or protocol == "icmpv6" and not addr_f & 2:
            return _MISSING
        comment = get("comment", "")
        if type(comment) is not str or len(comment) > 1000:
            return _MISSING
        flags = []
        for key, default in (
            ("sources_negate", False),
            ("destinations_negate", False),
            ("enabled", True),
        ):
            value = get(key, default)
            if type(value) is not bool:
                return _MISSING
            flags.append(value)
        if rid is not None:
            self.rule_ids[rid] = _RulePath(ruleset_path, index)
        return Rule(
            chain,
            action,
            rid,
            sides[0],
            sides[1],
            (),
            protocol,
            dports,
            sports,
            flags[0],
            flags[1],
            None,
            None,
            (),
            False,
            None,
            None,
            None,
            comment,
            flags[2],
            None,
            None,
        )

    def rule(self, item: object, path: str) -> Rule | None:
        rid = self.rule_id(item, path) if isinstance(item, dict) else None
        if self.mapping(item, path, _RULE_KEYS, ("chain", "action"), rid) is None:
            return None
        assert isinstance(item, dict)
        n_errors = len(self.errors)
        chain = self.choice(item, "chain", path, V.CHAINS, "chain", rid)
        action = self.choice(item, "action", path, V.ACTIONS, "action", rid)
        sources = self.str_list(item, "sources", path, rid)
        destinations = self.str_list(item, "destinations", path, rid)
        src_f = self.address_refs(sources, path, "sources", rid)
        dst_f = self.address_refs(destinations, path, "destinations", rid)
        services = self.str_list(item, "services", path, rid)
        protocol = self.choice(item, "protocol", path, V.PROTOCOLS, "protocol", rid)
        dports = self.str_list(item, "dports", path, rid)
        sports = self.str_list(item, "sports", path, rid)
        for key, ports in (("dports", dports), ("sports", sports)):
            for i, p in enumerate(ports):
                self.call(self.port, p, f"{path}.{key}[{i}]", rid)
        icmp_type = item.get("icmp_type")
        if icmp_type is not None:
            if protocol not in ("icmp", "icmpv6") or services:
                self.err(f"{path}.icmp_type", "an ICMP type needs protocol icmp or icmpv6", rid)
            else:
                self.call(
                    lambda v: V.parse_icmp_type(protocol, v), icmp_type, f"{path}.icmp_type", rid
                )
        proto_f: frozenset[int] = FAMILIES_ALL
        if services:
            if protocol is not None or dports or sports:
                self.err(
                    f"{path}.services",
                    "give either services or protocol/dports/sports, not both",
                    rid,
                )
            fams: set[int] = set()
            for i, ref in enumerate(services):
                protos = self.service_protocols.get(ref)
                if protos is None:
                    self.err(f"{path}.services[{i}]", f"unknown service {ref!r}", rid)
                    continue
                for proto in protos:
                    fams |= protocol_families(proto)
            proto_f = frozenset(fams) if fams else FAMILIES_ALL
        else:
            if (dports or sports) and (protocol or "any") not in V.PORT_PROTOCOLS:
                self.err(
                    f"{path}.{'dports' if dports else 'sports'}",
                    f"ports need protocol tcp or udp, not {protocol or 'any'}",
                    rid,
                )
            proto_f = protocol_families(protocol)
        if src_f is not _MISSING and dst_f is not _MISSING:
            if src_f and dst_f and not (src_f & dst_f):
                self.err(
                    f"{path}.destinations",
                    f"sources are IPv{min(src_f)} only and destinations IPv{min(dst_f)} "
                    "only: no packet can match",
                    rid,
                )
            else:
                addr_f = (src_f if src_f is not None else FAMILIES_ALL) & (
                    dst_f if dst_f is not None else FAMILIES_ALL
                )
                if addr_f and not (addr_f & proto_f):
                    self.err(
                        f"{path}.{'services' if services else 'protocol'}",
                        f"the rule's addresses are IPv{min(addr_f)} only but its "
                        f"protocol is for IPv{min(proto_f)} only",
                        rid,
                    )
        in_if, out_if = self.interfaces(
            item, path, chain, rid, ("input", "forward"), ("output", "forward")
        )
        states = self.str_list(item, "states", path, rid)
        for i, s in enumerate(states):
            self.call(lambda v: V.parse_choice(v, V.STATES, "state"), s, f"{path}.states[{i}]", rid)
        log_prefix = item.get("log_prefix")
        if log_prefix is not None:
            self.call(V.parse_log_prefix, str(log_prefix), f"{path}.log_prefix", rid)
        rate = item.get("rate_limit")
        if rate is not None:
            self.call(V.parse_rate, rate, f"{path}.rate_limit", rid)
        burst = item.get("burst")
        if burst is not None:
            if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 10000:
                self.err(f"{path}.burst", "must be a whole number 1-10000", rid)
            elif rate is None:
                self.err(f"{path}.burst", "burst needs rate_limit", rid)
        expires = item.get("expires_at")
        expires_at = None
        if expires is not None:
            expires_at = self.call(parse_datetime, expires, f"{path}.expires_at", rid)
        log = self.boolean(item, "log", path, False, rid)
        s_neg = self.boolean(item, "sources_negate", path, False, rid)
        d_neg = self.boolean(item, "destinations_negate", path, False, rid)
        enabled = self.boolean(item, "enabled", path, True, rid)
        comment = self.text(item, "comment", path, rid)
        if len(self.errors) != n_errors:
            return None
        return Rule(
            chain,
            action,
            rid,
            sources,
            destinations,
            services,
            protocol,
            dports,
            sports,
            s_neg,
            d_neg,
            in_if,
            out_if,
            tuple(dict.fromkeys(states)),
            log,
            None if log_prefix is None else str(log_prefix),
            None if rate is None else str(rate).strip(),
            burst,
            comment,
            enabled,
            expires_at,
            icmp_type,
        )

    def nat(self, item: object, path: str) -> NatRule | None:
        rid = self.rule_id(item, path) if isinstance(item, dict) else None
        if self.mapping(item, path, _NAT_KEYS, ("type",), rid) is None:
            return None
        assert isinstance(item, dict)
        n_errors = len(self.errors)
        kind = self.choice(item, "type", path, NAT_TYPES, "NAT type", rid)
        chain = item.get("chain")
        if kind and chain is None:
            chain = NAT_CHAINS[kind][0]
        elif kind and chain not in NAT_CHAINS[kind]:
            self.err(
                f"{path}.chain",
                f"a {kind} rule belongs in chain {' or '.join(NAT_CHAINS[kind])}, not {chain!r}",
                rid,
            )
        in_ok = ("prerouting",)
        out_ok = ("postrouting", "output")
        in_if, out_if = self.interfaces(item, path, chain, rid, in_ok, out_ok)
        protocol = self.choice(item, "protocol", path, V.PROTOCOLS, "protocol", rid)
        dports = self.str_list(item, "dports", path, rid)
        for i, p in enumerate(dports):
            self.call(self.port, p, f"{path}.dports[{i}]", rid)
        if dports and (protocol or "any") not in V.PORT_PROTOCOLS:
            self.err(
                f"{path}.dports", f"ports need protocol tcp or udp, not {protocol or 'any'}", rid
            )
        sources = self.str_list(item, "sources", path, rid)
        destinations = self.str_list(item, "destinations", path, rid)
        fams = [
            self.address_refs(sources, path, "sources", rid),
            self.address_refs(destinations, path, "destinations", rid),
        ]
        to = item.get("to")
        if kind in ("dnat", "snat"):
            if to is None:
                self.err(f"{path}.to", f"a {kind} rule needs `to`", rid)
            else:
                target = self.call(parse_nat_target, to, f"{path}.to", rid)
                if target is not _MISSING:
                    fams.append(frozenset((target[0].version,)))
                    if target[1] and (protocol or "any") not in V.PORT_PROTOCOLS:
                        self.err(f"{path}.to", "a target port needs protocol tcp or udp", rid)
        elif to is not None:
            self.err(f"{path}.to", "masquerade takes no `to`", rid)
        known = [f for f in fams if f not in (None, _MISSING)]
        if known and not frozenset.intersection(*known):
            self.err(path, "mixes IPv4 and IPv6 addresses", rid)
        enabled = self.boolean(item, "enabled", path, True, rid)
        comment = self.text(item, "comment", path, rid)
        if len(self.errors) != n_errors:
            return None
        return NatRule(
            kind,
            chain,
            rid,
            in_if,
            out_if,
            protocol,
            sources,
            destinations,
            dports,
            None if to is None else str(to).strip(),
            comment,
            enabled,
        )

    def assertion(self, item: object, path: str) -> Assertion | None:
        if (
            self.mapping(
                item, path, _ASSERT_KEYS, ("chain", "protocol", "source", "destination", "expect")
            )
            is None
        ):
            return None
        assert isinstance(item, dict)
        n_errors = len(self.errors)
        chain = self.choice(item, "chain", path, V.CHAINS, "chain")
        protocol = self.choice(item, "protocol", path, V.PROTOCOLS, "protocol")
        expect = self.choice(item, "expect", path, V.ACTIONS, "verdict")
        state = self.choice(item, "state", path, V.STATES, "state", default="new")
        addrs = []
        for key in ("source", "destination"):
            value = item.get(key)
            if value is None:
                continue
            addr = self.call(ipaddress.ip_address, str(value).strip(), f"{path}.{key}")
            if addr is not _MISSING:
                addrs.append(addr)
        if len(addrs) == 2 and addrs[0].version != addrs[1].version:
            self.err(f"{path}.destination", "source and destination are of different families")
        ports = {}
        for key in ("sport", "dport"):
            value = item.get(key)
            if value is None:
                ports[key] = None
                continue
            if isinstance(value, bool) or not str(value).isdigit() or not 0 < int(value) <= 65535:
                self.err(f"{path}.{key}", "port must be 1-65535")
            elif protocol not in V.PORT_PROTOCOLS:
                self.err(f"{path}.{key}", f"ports need protocol tcp or udp, not {protocol}")
            ports[key] = int(value) if str(value).isdigit() else None
        icmp_type = item.get("icmp_type")
        if icmp_type is not None and protocol:
            self.call(lambda v: V.parse_icmp_type(protocol, v), icmp_type, f"{path}.icmp_type")
        in_if, out_if = self.interfaces(
            item, path, chain, None, ("input", "forward"), ("output", "forward")
        )
        name = item.get("name")
        if name is not None:
            self.call(V.validate_name, name, f"{path}.name")
        if len(self.errors) != n_errors:
            return None
        return Assertion(
            chain,
            protocol,
            str(item["source"]).strip(),
            str(item["destination"]).strip(),
            expect,
            name,
            ports["sport"],
            ports["dport"],
            icmp_type,
            in_if,
            out_if,
            state,
            self.text(item, "description", path),
        )

    def device_groups(self, entries: list, rulesets: set[str]) -> list[DeviceGroup]:
        out = []
        for name, item, path in self.named(entries, "device_groups"):
            self.mapping(item, path, {"name", "rulesets", "description"})
            names = self.str_list(item, "rulesets", path)
            for i, rs in enumerate(names):
                if rs not in rulesets:
                    self.err(f"{path}.rulesets[{i}]", f"unknown rule set {rs!r}")
            out.append(DeviceGroup(name, names, self.text(item, "description", path)))
        return out

    def devices(self, entries: list, rulesets: set[str], groups: set[str]) -> list[Device]:
        out = []
        for name, item, path in self.named(entries, "devices"):
            if self.mapping(item, path, _DEVICE_KEYS) is None:
                continue
            n_errors = len(self.errors)
            address = item.get("address")
            if address is not None:
                self.call(ipaddress.ip_address, str(address).strip(), f"{path}.address")
            port = item.get("agent_port", 8745)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
                self.err(f"{path}.agent_port", "must be a port 1-65535")
            grps = self.str_list(item, "groups", path)
            for i, g in enumerate(grps):
                if g not in groups:
                    self.err(f"{path}.groups[{i}]", f"unknown device group {g!r}")
            own = self.str_list(item, "rulesets", path)
            for i, rs in enumerate(own):
                if rs not in rulesets:
                    self.err(f"{path}.rulesets[{i}]", f"unknown rule set {rs!r}")
            policy = dict(DEFAULT_POLICY)
            raw = item.get("default_policy")
            if (
                raw is not None
                and self.mapping(raw, f"{path}.default_policy", set(DEFAULT_POLICY)) is not None
            ):
                for chain in DEFAULT_POLICY:
                    value = self.choice(
                        raw,
                        chain,
                        f"{path}.default_policy",
                        V.ACTIONS,
                        "policy",
                        default=DEFAULT_POLICY[chain],
                    )
                    policy[chain] = value or policy[chain]
            mgmt = self.str_list(item, "management_sources", path)
            self.address_refs(mgmt, path, "management_sources", None)
            stateful = self.boolean(item, "stateful", path, True)
            loopback = self.boolean(item, "allow_loopback", path, True)
            desc = self.text(item, "description", path)
            if len(self.errors) != n_errors:
                continue
            out.append(
                Device(
                    name,
                    None if address is None else str(address).strip(),
                    port,
                    grps,
                    own,
                    policy["input"],
                    policy["forward"],
                    policy["output"],
                    mgmt,
                    stateful,
                    loopback,
                    desc,
                )
            )
        return out


def parse_datetime(value: object) -> datetime:
    """ISO 8601 (or a YAML timestamp); a time without zone is taken as UTC."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            result = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"invalid date/time {value!r}: use ISO 8601, e.g. 2026-12-31T00:00:00Z"
            ) from None
    else:
        raise ValueError("must be an ISO 8601 date/time")
    if result.tzinfo is None:
        result = result.replace(tzinfo=UTC)
    return result.astimezone(UTC)
