"""Interfaces a device's policy names that the host does not have.

The agent reports the host's interfaces in its facts; a rule, NAT rule or zone naming an
interface that matches none of them (a typo, `nosuchif0`) is legal for the kernel (it
simply never matches) and so is a warning, not an error: interfaces come and go (VPN
tunnels, containers' veths), and the facts are as old as the last enrolment.
"""

from __future__ import annotations

from collections.abc import Iterable

from .document import NatRule, PolicyDocument, Rule, fallback_rule_id
from .findings import Finding
from .tracer import iface_matches

_ALWAYS = frozenset({"lo"})


def interface_findings(
    doc: PolicyDocument, device_name: str, interfaces: Iterable[str]
) -> list[Finding]:
    """One `unknown_interface` warning per interface pattern of the device's rule sets
    (rules, NAT rules, the zones they use) that matches none of `interfaces`."""
    host = _ALWAYS | set(interfaces)
    users: dict[str, list[dict]] = {}
    zones_of: dict[str, list[str]] = {}
    seen: set[str] = set()
    for rs in doc.device_rulesets(doc.device(device_name)):
        if rs.name in seen:
            continue
        seen.add(rs.name)
        parts: tuple[tuple[str, tuple[Rule | NatRule, ...]], ...] = (
            ("rules", rs.rules),
            ("nat", rs.nat),
        )
        for kind, items in parts:
            for index, rule in enumerate(items):
                ref = {
                    "ruleset": rs.name,
                    "position": index + 1,
                    "id": rule.id or fallback_rule_id(rs.name, kind, index),
                }
                if kind == "nat":
                    ref["table"] = "nat"
                for iface in (rule.in_interface, rule.out_interface):
                    if iface is not None:
                        users.setdefault(iface, []).append(ref)
                for zone in (rule.in_zone, rule.out_zone):
                    if zone is None:
                        continue
                    for iface in doc.by_name["zones"][zone].interfaces:
                        users.setdefault(iface, []).append(ref)
                        if zone not in zones_of.setdefault(iface, []):
                            zones_of[iface].append(zone)
    findings = []
    for iface, refs in users.items():
        if any(iface_matches(iface, name) for name in host):
            continue
        where = f" (zone {', '.join(zones_of[iface])})" if iface in zones_of else ""
        findings.append(
            Finding(
                "unknown_interface",
                "warning",
                f"interface {iface!r}{where} matches none of {device_name}'s interfaces "
                f"({', '.join(sorted(host))}): rules using it never match there",
                list({r["id"]: r for r in refs}.values()),
                zones_of.get(iface, []),
            )
        )
    return findings
