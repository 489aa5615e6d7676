"""Values the document spells as text: address literals, NAT targets, protocol families."""

from __future__ import annotations

import ipaddress

from .. import nets as N
from .. import values as V
from .model import FAMILIES_ALL


def parse_literal(text: str) -> tuple[N.Net, ...]:
    """An address literal as CIDR blocks (`ValueError` worded as in values.py)."""
    return N.parse(text)


def protocol_families(protocol: str | None) -> frozenset[int]:
    if protocol == "icmp":
        return frozenset((4,))
    if protocol == "icmpv6":
        return frozenset((6,))
    return FAMILIES_ALL


def parse_nat_target(
    text: str,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, tuple[int, int] | None]:
    """`198.18.1.10`, `198.18.1.10:8080`, `[2001:2::1]:8080-8090` → (address, ports)."""
    text = str(text).strip()
    port: str | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"invalid NAT target {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"invalid NAT target {text!r}: use ADDRESS, ADDRESS:PORT or [IPv6]:PORT"
        ) from None
    return address, V.parse_port(port) if port is not None else None
