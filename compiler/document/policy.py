"""`PolicyDocument`: a whole validated policy document, with its lookups by name."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field

from ..gcpause import gc_paused
from .model import (
    AddressGroup,
    AddressObject,
    Device,
    DeviceGroup,
    Probe,
    RuleSet,
    Service,
    ServiceGroup,
    Zone,
)
from .parse_scope import Scope
from .parser import Parser
from .serialise import document_dict


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
    scope: Scope | None = None  # None: the document speaks for the whole policy
    zones: tuple[Zone, ...] = ()
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
            "zones",
            "rulesets",
            "device_groups",
            "devices",
        ):
            self.by_name[kind] = {o.name: o for o in getattr(self, kind)}

    def ruleset(self, name: str) -> RuleSet:
        return self.by_name["rulesets"][name]

    def zone_interfaces(self, name: str | None) -> tuple[str | None, ...]:
        """The interfaces a rule's `in_zone`/`out_zone` stands for ((None,): no zone)."""
        return (None,) if name is None else self.by_name["zones"][name].interfaces

    def device(self, name: str) -> Device:
        return self.by_name["devices"][name]

    def device_rulesets(self, device: Device) -> list[RuleSet]:
        """The device's rule sets in evaluation order: groups' (in order), then its own."""
        names: list[str] = []
        for group in device.groups:
            names.extend(self.by_name["device_groups"][group].rulesets)
        names.extend(device.rulesets)
        return [self.ruleset(n) for n in names]

    def device_probes(self, device: Device) -> list[Probe]:
        """The probes run after an apply to `device`: its own; without them, those of its
        groups in group order (a probe two groups share, once)."""
        if device.probes:
            return list(device.probes)
        out: list[Probe] = []
        for group in device.groups:
            out.extend(p for p in self.by_name["device_groups"][group].probes if p not in out)
        return out

    @classmethod
    def from_dict(cls, data: object, *, known_rulesets: Set[str] = frozenset()) -> PolicyDocument:
        """Validate and build; raises `DocumentError` with every problem found.

        `known_rulesets`: rule sets defined outside the document (the console's stored
        ones, for an import): devices and device groups may name them too."""
        with gc_paused():  # many small objects, no cycles
            parser = Parser()
            parser.known_rulesets = known_rulesets
            p = parser.document(data)
            doc = cls(
                1,
                p.addresses,
                p.address_groups,
                p.services,
                p.service_groups,
                p.rulesets,
                p.device_groups,
                p.devices,
                p.prune,
                p.scope,
                p.zones,
            )
            doc.literals.update(parser.literals)
            doc.ports.update(parser.ports)
            return doc

    def to_dict(self) -> dict:
        """The canonical dict form (defaults and empty values left out)."""
        return document_dict(self)
