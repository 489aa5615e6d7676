"""Zones: interfaces named once ("dmz"), optionally with networks, and used for in/out by
rules and NAT rules.

Rules and NAT rules hold a zone by name (`in_zone`/`out_zone`), as NAT rules hold their
addresses: the document form is names, and the zone services keep the names true (a
rename follows into the rules, a delete is refused while rules use the zone).
"""

from __future__ import annotations

from django.db import models

from compiler import values

from .base import NamedModel, raise_if


class Zone(NamedModel):
    """A named list of interface names (exact, or a prefix ending in '+'), and optionally
    the networks that belong there (POLICY-FORMAT zones: `networks`)."""

    interfaces = models.JSONField(
        default=list, help_text='interface names, e.g. ["eth1", "veth+"]; at least one'
    )
    networks = models.JSONField(
        default=list,
        blank=True,
        help_text="optional address literals: in_zone matches only sources in them, "
        "out_zone only destinations; empty = any address",
    )

    class Meta(NamedModel.Meta):
        verbose_name = "zone"

    def clean(self) -> None:
        raise_if({**zone_errors(self.interfaces), **zone_network_errors(self.networks)})


def zone_network_errors(networks: object) -> dict[str, list[str]]:
    """Problems of a zone's networks, under "networks" (`{}` when valid or empty)."""
    if not isinstance(networks, list):
        return {"networks": ["must be a list of addresses, CIDRs or ranges"]}
    problems: list[str] = []
    seen: set[str] = set()
    for i, net in enumerate(networks):
        if not isinstance(net, str):
            problems.append(f"[{i}]: must be a string")
            continue
        try:
            values.parse_address(net)
        except ValueError as exc:
            problems.append(f"[{i}]: {exc}")
            continue
        if net in seen:
            problems.append(f"[{i}]: network {net!r} is listed twice")
        seen.add(net)
    return {"networks": problems} if problems else {}


def zone_errors(interfaces: object) -> dict[str, list[str]]:
    """Problems of a zone's interface list, under "interfaces" (`{}` when valid)."""
    if not isinstance(interfaces, list) or not interfaces:
        return {"interfaces": ["a zone needs a list of at least one interface"]}
    problems: list[str] = []
    seen: set[str] = set()
    for i, iface in enumerate(interfaces):
        try:
            values.parse_interface(iface)
        except ValueError as exc:
            problems.append(f"[{i}]: {exc}")
            continue
        if iface in seen:
            problems.append(f"[{i}]: interface {iface!r} is listed twice")
        seen.add(iface)
    return {"interfaces": problems} if problems else {}
