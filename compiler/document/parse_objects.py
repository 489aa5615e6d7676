"""Parsing the named objects: addresses, address groups, services, service groups.

Besides the objects, it records what rules need to check their references: the IP
families of each address (group) and the protocols of each service (group).
"""

from __future__ import annotations

from functools import partial

from .. import values as V
from .model import AddressGroup, AddressObject, Service, ServiceGroup
from .parse_base import MISSING, ParserBase


class ObjectParser(ParserBase):
    """The object lists of a document."""

    def addresses(self, entries: list) -> list[AddressObject]:
        out = []
        for name, item, path in self.named(entries, "addresses"):
            if self.mapping(item, path, {"name", "value", "description"}, ("value",)) is None:
                continue
            value = item.get("value")
            parsed = self.call(self.lit, str(value).strip(), f"{path}.value")
            if value is None or parsed is MISSING:
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
                self.call(partial(V.parse_icmp_type, protocol), icmp_type, f"{path}.icmp_type")
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
                    self.unknown(f"{path}.members[{i}]", "service", member)
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
