"""The small policy the draft-analysis tests (API, dashboard, browser) share."""

from __future__ import annotations

from rules import services
from rules.models import Device, RuleSet
from rules.services import device_refs


def edge_and_base() -> RuleSet:
    """edge: #1 accepts tcp/22 from 198.18.0.0/24. base (applied first on fw-1) drops
    198.18.5.0/24 to tcp/443. Returns edge."""
    edge = services.object_save(RuleSet(name="edge"))
    services.rule_create(
        ruleset=edge,
        data={
            "action": "accept",
            "sources": ["198.18.0.0/24"],
            "protocol": "tcp",
            "dports": ["22"],
        },
    )
    base = services.object_save(RuleSet(name="base"))
    services.rule_create(
        ruleset=base,
        data={"action": "drop", "sources": ["198.18.5.0/24"], "protocol": "tcp", "dports": ["443"]},
    )
    fw = services.object_save(Device(name="fw-1", address="198.18.0.2"))
    device_refs.device_set_rulesets(device=fw, rulesets=["base", "edge"])
    return edge
