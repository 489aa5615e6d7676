"""Parsing device groups and devices, the targets rule sets are deployed to."""

from __future__ import annotations

import ipaddress

from .. import values as V
from .model import DEFAULT_POLICY, Device, DeviceGroup
from .parse_probes import ProbeParser

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
    "probes",
}


class DeviceParser(ProbeParser):
    """Device groups and devices, checked against the rule sets and addresses."""

    def device_groups(self, entries: list, rulesets: set[str]) -> list[DeviceGroup]:
        out = []
        for name, item, path in self.named(entries, "device_groups"):
            self.mapping(item, path, {"name", "rulesets", "description", "probes"})
            names = self.str_list(item, "rulesets", path)
            for i, rs in enumerate(names):
                if rs not in rulesets:
                    self.unknown(f"{path}.rulesets[{i}]", "rule set", rs)
            probes = self.probes(item, path)
            out.append(DeviceGroup(name, names, self.text(item, "description", path), probes))
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
                    self.unknown(f"{path}.groups[{i}]", "device group", g)
            own = self.str_list(item, "rulesets", path)
            for i, rs in enumerate(own):
                if rs not in rulesets:
                    self.unknown(f"{path}.rulesets[{i}]", "rule set", rs)
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
            probes = self.probes(item, path)
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
                    probes,
                )
            )
        return out
