"""Data builders shared by the dashboard tests."""

from __future__ import annotations

from rules import services
from rules.models import AddressObject, Device, DeviceRuleSet, RuleSet, Service, ServiceGroup

HX = {"HTTP_HX_REQUEST": "true"}


def small_policy() -> RuleSet:
    """office/web-1 addresses, https/web services and a 3-rule set `web`."""
    services.object_save(AddressObject(name="office", value="198.18.0.0/24"))
    services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    services.object_save(Service(name="https", protocol="tcp", ports=["443"]))
    web = services.object_save(ServiceGroup(name="web"))
    services.service_group_set_members(group=web, members=["https"])
    ruleset = services.object_save(RuleSet(name="web"))
    services.rule_create(
        ruleset=ruleset,
        data={
            "action": "accept",
            "sources": ["office"],
            "services": ["web"],
            "comment": "office to web",
        },
    )
    services.rule_create(
        ruleset=ruleset,
        data={
            "action": "accept",
            "destinations": ["web-1"],
            "protocol": "tcp",
            "dports": ["22"],
            "comment": "ssh",
        },
    )
    services.rule_create(
        ruleset=ruleset,
        data={"action": "drop", "sources": ["198.18.9.0/24"], "comment": "block lab"},
    )
    return ruleset


def positions(ruleset) -> list[str]:
    return list(ruleset.rules.order_by("position").values_list("comment", flat=True))


def device_with(ruleset: RuleSet, name: str = "edge-1") -> Device:
    """A device using `ruleset` directly."""
    device = Device.objects.create(
        name=name, address="198.18.0.2", management_sources=["198.18.0.1"]
    )
    DeviceRuleSet.objects.create(device=device, ruleset=ruleset)
    return device
