"""Parsing a rule set's assertions: packets and the verdict the policy must give them."""

from __future__ import annotations

import ipaddress

from .. import values as V
from . import keys
from .model import Assertion
from .parse_base import MISSING, ParserBase

_ASSERT_KEYS = frozenset(keys.ASSERTION)


class AssertionParser(ParserBase):
    """Assertions (their packets are literal: no names to resolve)."""

    def assertion(self, item: object, path: str) -> Assertion | None:
        if (
            self.mapping(
                item, path, _ASSERT_KEYS, ("chain", "protocol", "source", "destination", "expect")
            )
            is None
        ):
            return None
        assert isinstance(item, dict)
        n_errors = len(self.errors)
        chain = self.choice(item, "chain", path, V.CHAINS, "chain")
        protocol = self.choice(item, "protocol", path, V.PROTOCOLS, "protocol")
        expect = self.choice(item, "expect", path, V.ACTIONS, "verdict")
        state = self.choice(item, "state", path, V.STATES, "state", default="new")
        addrs = []
        for key in ("source", "destination"):
            value = item.get(key)
            if value is None:
                continue
            addr = self.call(ipaddress.ip_address, str(value).strip(), f"{path}.{key}")
            if addr is not MISSING:
                addrs.append(addr)
        if len(addrs) == 2 and addrs[0].version != addrs[1].version:
            self.mismatch(f"{path}.destination", "source and destination are of different families")
        ports: dict[str, int | None] = {}
        for key in ("sport", "dport"):
            value = item.get(key)
            if value is None:
                ports[key] = None
                continue
            if isinstance(value, bool) or not str(value).isdecimal() or not 0 < int(value) <= 65535:
                self.err(f"{path}.{key}", "port must be 1-65535")
            elif protocol not in V.PORT_PROTOCOLS:
                self.err(f"{path}.{key}", f"ports need protocol tcp or udp, not {protocol}")
            ports[key] = int(value) if str(value).isdecimal() else None
        icmp_type = item.get("icmp_type")
        if icmp_type is not None and protocol:
            self.call(lambda v: V.parse_icmp_type(protocol, v), icmp_type, f"{path}.icmp_type")
        in_if, out_if = self.interfaces(
            item, path, chain, None, ("input", "forward"), ("output", "forward")
        )
        name = item.get("name")
        if name is not None:
            self.call(V.validate_name, name, f"{path}.name")
        if (
            len(self.errors) != n_errors
            or chain is None
            or protocol is None
            or expect is None
            or state is None
        ):
            return None
        return Assertion(
            chain,
            protocol,
            str(item["source"]).strip(),
            str(item["destination"]).strip(),
            expect,
            name,
            ports["sport"],
            ports["dport"],
            icmp_type,
            in_if,
            out_if,
            state,
            self.text(item, "description", path),
        )
