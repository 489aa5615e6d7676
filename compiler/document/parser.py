"""The one parser of the policy dict form: the parsers of each part, in document order.

Objects come first (rules check their references against them), then rule sets, then
device groups and devices (which name rule sets). Every problem is collected and raised
at the end as one `DocumentError`.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import NamedTuple

from ..errors import DocumentError
from . import keys
from .model import (
    AddressGroup,
    AddressObject,
    Device,
    DeviceGroup,
    RuleSet,
    Service,
    ServiceGroup,
    Zone,
)
from .parse_assertions import AssertionParser
from .parse_devices import DeviceParser
from .parse_nat import NatParser
from .parse_objects import ObjectParser
from .parse_rules import RuleParser
from .parse_scope import Scope, ScopeParser

_TOP_KEYS = frozenset(keys.DOCUMENT)


class Parsed(NamedTuple):
    """The parts of a valid document (`PolicyDocument.from_dict` assembles them)."""

    addresses: tuple[AddressObject, ...]
    address_groups: tuple[AddressGroup, ...]
    services: tuple[Service, ...]
    service_groups: tuple[ServiceGroup, ...]
    rulesets: tuple[RuleSet, ...]
    device_groups: tuple[DeviceGroup, ...]
    devices: tuple[Device, ...]
    prune: bool | None
    scope: Scope | None
    zones: tuple[Zone, ...] = ()


class Parser(ObjectParser, RuleParser, NatParser, AssertionParser, DeviceParser, ScopeParser):
    """Parses one document (an instance keeps what it learnt: use one per document)."""

    # rule sets defined outside the document that devices may name (PolicyDocument.from_dict)
    known_rulesets: AbstractSet[str] = frozenset()

    def document(self, data: object) -> Parsed:
        """The parts of `data`; `DocumentError` with every problem found."""
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
        scope = self.scope(top.get("scope"))
        addresses = self.addresses(self.items(top, "addresses", ""))
        groups = self.address_groups(self.items(top, "address_groups", ""))
        services = self.services(self.items(top, "services", ""))
        sgroups = self.service_groups(self.items(top, "service_groups", ""))
        zones = self.zones(self.items(top, "zones", ""))
        rulesets = [
            self.ruleset(n, item, p)
            for n, item, p in self.named(self.items(top, "rulesets", ""), "rulesets")
        ]
        rs_names = {rs.name for rs in rulesets} | set(self.known_rulesets)
        dgroups = self.device_groups(self.items(top, "device_groups", ""), rs_names)
        devices = self.devices(self.items(top, "devices", ""), rs_names, {g.name for g in dgroups})
        if self.errors:
            raise DocumentError(self.errors)
        return Parsed(
            tuple(addresses),
            tuple(groups),
            tuple(services),
            tuple(sgroups),
            tuple(rulesets),
            tuple(dgroups),
            tuple(devices),
            prune,
            scope,
            tuple(zones),
        )

    def ruleset(self, name: str, item: dict, path: str) -> RuleSet:
        """One rule set: its rules (plain ones on the fast path), NAT rules, assertions."""
        self.mapping(item, path, {"name", "description", "rules", "nat", "assertions"})
        fast, general = self.plain_rule, self.rule
        rules = [
            fast(r, path, i) or general(r, f"{path}.rules[{i}]")
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
