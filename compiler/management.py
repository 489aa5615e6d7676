"""Rules that would touch management traffic, as analysis findings.

Management traffic of a device: TCP from its `management_sources` to ssh (22) or its
`agent_port` on the device itself. Two fixed steps keep it working whatever the rule sets
say (lower/static.py): the anti-lockout accepts it at the top of `RPT-INPUT`, and the NAT
exemption returns it from `RPT-PREROUTING`/`RPT-OUTPUT` before any NAT rule. A rule that
would drop, reject or redirect it therefore never does so; a finding names the rule, so a
rule set is never read as doing what the kernel does not.
"""

from __future__ import annotations

from .document import Device, RuleSet, fallback_rule_id
from .findings import Finding
from .lower.nat import nat_match
from .regions import Box, Entry, bbox_meet, fm_region, interface_reps, regions_meet
from .resolve import FamilyMatch, ProtoSpec, Resolver, merge_ports

KIND = "management"
SSH = 22
# the nat chains the exemption opens (lower/nat.py `_EXEMPT`); POSTROUTING never sees a
# connection to the device itself
_NAT_CHAINS = ("prerouting", "output")
_BLOCKING = ("drop", "reject")


def management_matches(device: Device, resolver: Resolver) -> dict[int, FamilyMatch]:
    """Management traffic per family (no family: no management sources in it)."""
    if not device.management_sources:
        return {}
    ports = merge_ports([(SSH, SSH), (device.agent_port, device.agent_port)])
    return {
        fam: FamilyMatch(fam, nets, False, None, False, (ProtoSpec("tcp", ports),))
        for fam, nets in resolver.addresses(device.management_sources).items()
    }


def management_region(
    device: Device, resolver: Resolver, reps: tuple[frozenset, frozenset]
) -> dict[int, list[Box]]:
    """Management traffic as a region per family (interfaces: any of `reps`)."""
    return {
        fam: fm_region(fm, None, None, (), reps)
        for fam, fm in management_matches(device, resolver).items()
    }


def _describe(device: Device) -> str:
    return (
        f"management traffic of device {device.name} (tcp from "
        f"{', '.join(device.management_sources)} to ports {SSH} and {device.agent_port})"
    )


def filter_findings(
    device: Device, mgmt: dict[int, list[Box]], entries: list[Entry]
) -> list[Finding]:
    """Input rules (`entries`, regions built with the same interface representatives as
    `mgmt`) that drop or reject some management traffic: the anti-lockout overrides them."""
    out = []
    bounds = Entry("sys:mgmt", None, None, "accept", mgmt).bbox
    for entry in entries:
        if entry.ruleset is None or entry.action not in _BLOCKING:
            continue
        if any(
            bbox_meet(entry.bbox.get(fam), bounds.get(fam)) and regions_meet(region, mgmt[fam])
            for fam, region in entry.region.items()
        ):
            out.append(
                Finding(
                    KIND,
                    "warning",
                    f"{entry.label} would {entry.action} {_describe(device)}; the anti-lockout "
                    "step accepts that traffic before any rule set, so this rule never "
                    "applies to it",
                    [entry.ref()],
                )
            )
    return out


def nat_findings(device: Device, rulesets: list[RuleSet], resolver: Resolver) -> list[Finding]:
    """NAT rules in PREROUTING/OUTPUT that match some management traffic: the NAT exemption
    keeps that traffic out of them."""
    nats = [
        (rs, index, nat)
        for rs in rulesets
        for index, nat in enumerate(rs.nat)
        if nat.enabled and nat.chain in _NAT_CHAINS
    ]
    if not nats or not device.management_sources:
        return []
    reps = (
        interface_reps({n.in_interface for _, _, n in nats if n.in_interface}),
        interface_reps({n.out_interface for _, _, n in nats if n.out_interface}),
    )
    mgmt = management_region(device, resolver, reps)
    out = []
    for rs, index, nat in nats:
        touches = False
        for fam, region in mgmt.items():
            fm = nat_match(nat, fam, resolver)
            if fm is not None and regions_meet(
                fm_region(fm, nat.in_interface, nat.out_interface, (), reps), region
            ):
                touches = True
        if not touches:
            continue
        rule_id = nat.id or fallback_rule_id(rs.name, "nat", index)
        label = f"{rs.name} NAT rule {index + 1} ({rule_id})"
        out.append(
            Finding(
                KIND,
                "warning",
                f"{label} ({nat.type}) matches {_describe(device)}; management traffic to the "
                "device's own addresses is exempt from Rampart's NAT, so this rule never "
                "redirects it",
                [{"ruleset": rs.name, "position": index + 1, "id": rule_id, "table": "nat"}],
            )
        )
    return out
