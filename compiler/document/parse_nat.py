"""Parsing NAT rules (dnat, snat, masquerade, redirect) of a rule set."""

from __future__ import annotations

from .. import values as V
from . import keys
from .literals import parse_nat_target
from .model import NAT_CHAINS, NAT_TYPES, NatRule
from .parse_base import MISSING
from .parse_zones import ZoneParser

_NAT_KEYS = frozenset(keys.NAT)


class NatParser(ZoneParser):
    """NAT rules, checked against the addresses parsed before them."""

    def nat(self, item: object, path: str) -> NatRule | None:
        rid = self.rule_id(item, path) if isinstance(item, dict) else None
        if self.mapping(item, path, _NAT_KEYS, ("type",), rid) is None:
            return None
        assert isinstance(item, dict)
        n_errors = len(self.errors)
        kind = self.choice(item, "type", path, NAT_TYPES, "NAT type", rid)
        chain = item.get("chain")
        if kind and chain is None:
            chain = NAT_CHAINS[kind][0]
        elif kind and chain not in NAT_CHAINS[kind]:
            self.err(
                f"{path}.chain",
                f"a {kind} rule belongs in chain {' or '.join(NAT_CHAINS[kind])}, not {chain!r}",
                rid,
            )
        in_ok = ("prerouting",)
        out_ok = ("postrouting", "output")
        in_if, out_if = self.interfaces(item, path, chain, rid, in_ok, out_ok)
        in_zone, out_zone = self.zone_refs(item, path, chain, rid, (in_if, out_if), (in_ok, out_ok))
        protocol = self.choice(item, "protocol", path, V.PROTOCOLS, "protocol", rid)
        dports = self.str_list(item, "dports", path, rid)
        for i, p in enumerate(dports):
            self.call(self.port, p, f"{path}.dports[{i}]", rid)
        if dports and (protocol or "any") not in V.PORT_PROTOCOLS:
            self.err(
                f"{path}.dports", f"ports need protocol tcp or udp, not {protocol or 'any'}", rid
            )
        sources = self.str_list(item, "sources", path, rid)
        destinations = self.str_list(item, "destinations", path, rid)
        fams = [
            self.address_refs(sources, path, "sources", rid),
            self.address_refs(destinations, path, "destinations", rid),
        ]
        to = item.get("to")
        target_family = None
        if kind in ("dnat", "snat"):
            if to is None:
                self.err(f"{path}.to", f"a {kind} rule needs `to`", rid)
            else:
                target = self.call(parse_nat_target, to, f"{path}.to", rid)
                if target is not MISSING:
                    target_family = target[0].version
                    if target[1] and (protocol or "any") not in V.PORT_PROTOCOLS:
                        self.err(f"{path}.to", "a target port needs protocol tcp or udp", rid)
        elif kind == "redirect" and to is not None:
            # the local port (or range) the connection goes to; absent: its own port
            if self.call(V.parse_port, str(to).strip(), f"{path}.to", rid) is not MISSING and (
                (protocol or "any") not in V.PORT_PROTOCOLS
            ):
                self.err(f"{path}.to", "a redirect port needs protocol tcp or udp", rid)
        elif to is not None:
            self.err(f"{path}.to", "masquerade takes no `to`", rid)
        self.nat_families(path, [f for f in fams if f not in (None, MISSING)], target_family, rid)
        enabled = self.boolean(item, "enabled", path, True, rid)
        comment = self.text(item, "comment", path, rid)
        if len(self.errors) != n_errors or kind is None or not isinstance(chain, str):
            return None
        return NatRule(
            kind,
            chain,
            rid,
            in_if,
            out_if,
            protocol,
            sources,
            destinations,
            dports,
            None if to is None else str(to).strip(),
            comment,
            enabled,
            in_zone,
            out_zone,
        )

    def nat_families(
        self, path: str, known: list[frozenset[int]], target: int | None, rid: str | None
    ) -> None:
        """Sources, destinations and target must share a family: the kernel cannot
        translate an IPv6 packet to an IPv4 address (the target's field is named when it is
        the one that differs)."""
        common = frozenset.intersection(*known) if known else None
        if common is not None and not common:
            self.mismatch(path, "mixes IPv4 and IPv6 addresses", rid)
        elif common is not None and target is not None and target not in common:
            others = "/".join(f"IPv{f}" for f in sorted(common))
            self.mismatch(
                f"{path}.to",
                f"mixes IPv4 and IPv6 addresses: an IPv{target} target for {others} "
                "sources and destinations",
                rid,
            )
