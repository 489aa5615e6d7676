"""Parsing zones (named interface lists) and the `in_zone`/`out_zone` of rules.

A zone is its own key (`in_zone: dmz`), not a name allowed in `in_interface`: "dmz" is
also a valid interface name, so one key holding both would be ambiguous.
"""

from __future__ import annotations

from .. import values as V
from .model import Zone
from .parse_base import MISSING, ParserBase

_ZONE_KEYS = {"name", "interfaces", "networks", "description"}


class ZoneParser(ParserBase):
    """The zones of a document, and rules' references to them."""

    def zones(self, entries: list) -> list[Zone]:
        out = []
        for name, item, path in self.named(entries, "zones"):
            if self.mapping(item, path, _ZONE_KEYS, ("interfaces",)) is None:
                continue
            interfaces = self.str_list(item, "interfaces", path)
            n_errors = len(self.errors)
            seen: set[str] = set()
            for i, iface in enumerate(interfaces):
                where = f"{path}.interfaces[{i}]"
                if self.call(V.parse_interface, iface, where) is MISSING:
                    continue
                if iface in seen:
                    self.err(where, f"interface {iface!r} is listed twice")
                seen.add(iface)
            if not interfaces and item.get("interfaces") is not None:
                self.err(f"{path}.interfaces", "a zone needs at least one interface")
            networks = self.zone_networks(item, path)
            description = self.text(item, "description", path)
            if len(self.errors) != n_errors or not interfaces:
                continue
            self.zone_interfaces[name] = interfaces
            out.append(Zone(name, interfaces, description, networks))
        return out

    def zone_networks(self, item: dict, path: str) -> tuple[str, ...]:
        """A zone's optional `networks`: address literals (address, CIDR, range), each once."""
        if item.get("networks") is None:
            return ()
        networks = self.str_list(item, "networks", path)
        seen: set[str] = set()
        for i, net in enumerate(networks):
            where = f"{path}.networks[{i}]"
            if self.call(V.parse_address, net, where) is MISSING:
                continue
            if net in seen:
                self.err(where, f"network {net!r} is listed twice")
            seen.add(net)
        if not networks:
            self.err(f"{path}.networks", "leave networks out, or list at least one")
        return tuple(networks)

    def zone_known(self, name: str) -> bool:
        """Whether `name` is a zone of the document."""
        return name in self.zone_interfaces

    def zone_refs(
        self,
        item: dict,
        path: str,
        chain: str | None,
        rule_id: str | None,
        interfaces: tuple[str | None, str | None],
        allowed: tuple[tuple[str, ...], tuple[str, ...]],
    ) -> tuple[str | None, str | None]:
        """(in_zone, out_zone) of a rule: defined zones, in a chain that has that side,
        and not together with the interface of the same side."""
        result: list[str | None] = []
        for side, iface, chains in zip(("in", "out"), interfaces, allowed, strict=True):
            key = f"{side}_zone"
            value = item.get(key)
            if value is None:
                result.append(None)
                continue
            where = f"{path}.{key}"
            if not isinstance(value, str) or not self.zone_known(value):
                self.unknown(where, "zone", str(value), rule_id)
                result.append(None)
                continue
            if iface is not None or item.get(f"{side}_interface") is not None:
                self.err(where, f"give either {side}_interface or {key}, not both", rule_id)
            if chain and chain not in chains:
                self.err(where, f"{key} cannot be matched in chain {chain}", rule_id)
            result.append(value)
        return result[0], result[1]
