"""Parsing and validation of the policy's scalar values (pure: no Django, no I/O).

One place decides what a valid address, port, name or rate is, so the models, the policy
document, the compiler and the agent reject the same inputs with the same words. Every
parser raises `ValueError` with a message fit to show next to the field.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
INTERFACE_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}\+?$")
IFNAMSIZ = 16  # the kernel's buffer for an interface name, its NUL included
RATE_RE = re.compile(r"^(\d{1,9})/(second|minute|hour|day)$")
LOG_PREFIX_MAX = 29

# xt_limit (net/netfilter/xt_limit.c): iptables stores a rate as the interval between
# packets in 1/10000 s (`XT_LIMIT_SCALE * seconds_per_unit / count`: 0 is "Rate too fast",
# so at most 10000/second); the kernel refuses (ERANGE) a rule whose interval × burst
# overflows its 32-bit credit arithmetic: (interval × burst / 10000) × HZ × CREDITS_PER_JIFFY
# must stay below 2^32, where HZ × CREDITS_PER_JIFFY is 25600 (HZ 100), 32000 (HZ 250 or
# 1000) or 38400 (HZ 300). The bound below is the strictest, so a rule loads on every host.
XT_LIMIT_SCALE = 10000
LIMIT_BURST_DEFAULT = 5  # iptables' default when --limit-burst is not given
LIMIT_SPAN_MAX = 0xFFFFFFFF // 38400  # seconds of interval × burst (111848 s, about 31 h)
# rate_limit and rate_limit_per_source load as xt_hashlimit (shared_limit.py,
# per_source.py), which turns interval × burst (µs) into credits by multiplying it by
# HZ × CREDITS_PER_JIFFY / 10^6 in 64 bits (user2credits); past 2^64 it wraps and the rule
# is refused (ERANGE) or, by chance, loads with a wrapped bucket. The factor is largest
# for HZ 300 (164926744), so this bound loads the same on every host: interval × burst
# below about 111848.1 s (31 h), a little under xt_limit's. Measured on 6.18 (HZ 250):
# 1/day with burst 10 is refused.
HASHLIMIT_CREDITS_FACTOR = 164_926_744
HASHLIMIT_SPAN_MAX_US = (2**64 - 1) // HASHLIMIT_CREDITS_FACTOR
BURST_MAX = 10000
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

PROTOCOLS = ("any", "tcp", "udp", "icmp", "icmpv6")
PORT_PROTOCOLS = ("tcp", "udp")
CHAINS = ("input", "output", "forward")
ACTIONS = ("accept", "drop", "reject")
# `reject_with`: how a reject answers, in the IPv4 spelling; REJECT_WITH_FAMILY spells it per
# family as iptables-save prints it (ip6tables has its own names). Absent = port unreachable.
REJECT_WITH = (
    "icmp-port-unreachable",
    "icmp-host-unreachable",
    "icmp-net-unreachable",
    "icmp-admin-prohibited",
    "icmp-host-prohibited",
    "icmp-net-prohibited",
    "tcp-reset",
)
REJECT_WITH_DEFAULT = "icmp-port-unreachable"
REJECT_WITH_FAMILY = {
    4: {name: name for name in REJECT_WITH},
    6: {
        "icmp-port-unreachable": "icmp6-port-unreachable",
        "icmp-host-unreachable": "icmp6-addr-unreachable",
        "icmp-net-unreachable": "icmp6-no-route",
        "icmp-admin-prohibited": "icmp6-adm-prohibited",
        # IPv6 has no host/net "prohibited": administratively prohibited is its answer
        "icmp-host-prohibited": "icmp6-adm-prohibited",
        "icmp-net-prohibited": "icmp6-adm-prohibited",
        "tcp-reset": "tcp-reset",
    },
}
STATES = ("new", "established", "related", "invalid", "untracked")
# a rule may also ask for `dnat`: the connection's destination was translated by the nat
# table (iptables `--ctstate DNAT`, nft `ct status dnat`); a status, not a packet state
RULE_STATES = (*STATES, "dnat")

ICMP_TYPES = {
    "echo-reply": 0,
    "destination-unreachable": 3,
    "redirect": 5,
    "echo-request": 8,
    "router-advertisement": 9,
    "router-solicitation": 10,
    "time-exceeded": 11,
    "parameter-problem": 12,
    "timestamp-request": 13,
    "timestamp-reply": 14,
}
ICMPV6_TYPES = {
    "destination-unreachable": 1,
    "packet-too-big": 2,
    "time-exceeded": 3,
    "parameter-problem": 4,
    "echo-request": 128,
    "echo-reply": 129,
    "router-solicitation": 133,
    "router-advertisement": 134,
    "neighbour-solicitation": 135,
    "neighbour-advertisement": 136,
    "redirect": 137,
}


def validate_name(value: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ValueError(
            f"invalid name {value!r}: 1-63 characters, letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    if is_literal(value):
        raise ValueError(f"invalid name {value!r}: it reads as an address")
    return value


def is_literal(value: str) -> bool:
    """True when a reference is an address literal rather than an object name."""
    return isinstance(value, str) and _is_literal(value)


@functools.lru_cache(maxsize=65536)
def _is_literal(value: str) -> bool:
    # Cached: a bulk call asks about the same few names thousands of times.
    try:
        parse_address(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, order=True)
class AddressRange:
    """An inclusive range of addresses of one family, e.g. 198.18.4.10-198.18.4.99."""

    first: ipaddress.IPv4Address | ipaddress.IPv6Address
    last: ipaddress.IPv4Address | ipaddress.IPv6Address

    @property
    def version(self) -> int:
        return self.first.version

    def networks(self) -> list[IPNetwork]:
        return list(ipaddress.summarize_address_range(self.first, self.last))

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


Address = IPNetwork | AddressRange


def parse_address(value: str) -> Address:
    """An address, CIDR or range, IPv4 or IPv6. A host address becomes a /32 or /128."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("an address, CIDR or range is required")
    return _parse_address(value.strip())


@functools.lru_cache(maxsize=65536)
def _parse_address(text: str) -> Address:
    # Cached: results are immutable, and the same literals recur across thousands of rules.
    if "-" in text:
        start, _, end = text.partition("-")
        try:
            first, last = ipaddress.ip_address(start.strip()), ipaddress.ip_address(end.strip())
        except ValueError:
            raise ValueError(f"invalid address range {text!r}") from None
        if first.version != last.version:
            raise ValueError(f"range {text!r} mixes IPv4 and IPv6")
        if int(last) < int(first):
            raise ValueError(f"range {text!r} ends before it starts")
        return AddressRange(first, last)
    if "/" in text:
        addr, _, plen = text.partition("/")
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            raise ValueError(f"invalid network address {addr!r}") from None
        limit = 32 if ip.version == 4 else 128
        if not plen.isdecimal() or int(plen) > limit:
            raise ValueError(
                f"invalid prefix length /{plen}: must be 0-{limit} for IPv{ip.version}"
            )
        try:
            return ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise ValueError(
                f"{text!r} has host bits set (did you mean "
                f"{ipaddress.ip_network(text, strict=False)}?)"
            ) from None
    try:
        return ipaddress.ip_network(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"invalid address {text!r}") from None


def address_networks(address: Address) -> list[IPNetwork]:
    """The CIDR blocks that together cover an address value."""
    return address.networks() if isinstance(address, AddressRange) else [address]


def address_version(address: Address) -> int:
    return address.version


def parse_port(value: object) -> tuple[int, int]:
    """A port or range ("443", "8000-8100", 53) as an inclusive (low, high) pair."""
    text = str(value).strip()
    if text.isdecimal():  # a single port in range, the frequent spelling: nothing to split
        port = int(text)  # (raises as `_parse_port_text` would)
        if 0 < port <= 65535:
            return port, port
    return _parse_port_text(text)


def _parse_port_text(text: str) -> tuple[int, int]:
    """`parse_port` of stripped text, the general way: ranges, and every error's words."""
    low, sep, high = text.partition("-")
    if not low.isdecimal() or (sep and not high.isdecimal()):
        raise ValueError(f"invalid port {text!r}: use a number or a range like 8000-8100")
    lo, hi = int(low), int(high) if sep else int(low)
    for port in (lo, hi):
        if not 0 < port <= 65535:
            raise ValueError(f"port {port} is out of range (1-65535)")
    if hi < lo:
        raise ValueError(f"port range {text!r} ends before it starts")
    return lo, hi


def parse_ports(values: object) -> list[tuple[int, int]]:
    if values is None:
        return []
    if isinstance(values, (str, int)):
        values = [p for p in str(values).split(",") if p.strip()]
    if not isinstance(values, (list, tuple)):
        raise ValueError('ports must be a list such as ["443", "8000-8100"]')
    return [parse_port(v) for v in values]


def format_port(port: tuple[int, int]) -> str:
    return str(port[0]) if port[0] == port[1] else f"{port[0]}-{port[1]}"


def parse_protocol(value: str) -> str:
    if value not in PROTOCOLS:
        raise ValueError(f"unknown protocol {value!r}: one of {', '.join(PROTOCOLS)}")
    return value


def parse_icmp_type(protocol: str, value: str | int | None) -> int | None:
    """An ICMP/ICMPv6 type by name or number; None for any type."""
    if value in (None, ""):
        return None
    table = ICMPV6_TYPES if protocol == "icmpv6" else ICMP_TYPES
    if protocol not in ("icmp", "icmpv6"):
        raise ValueError("an ICMP type needs protocol icmp or icmpv6")
    if isinstance(value, int) or str(value).isdecimal():
        number = int(value)
        if not 0 <= number <= 255:
            raise ValueError(f"ICMP type {number} is out of range (0-255)")
        return number
    if value not in table:
        raise ValueError(f"unknown {protocol} type {value!r}: one of {', '.join(table)}")
    return table[value]


def check_ports_allowed(protocol: str, dports: list, sports: list) -> None:
    """Ports only make sense for tcp and udp."""
    if (dports or sports) and protocol not in PORT_PROTOCOLS:
        raise ValueError(f"ports need protocol tcp or udp, not {protocol}")


@dataclass(frozen=True)
class Rate:
    count: int
    unit: str

    def __str__(self) -> str:
        return f"{self.count}/{self.unit}"


def parse_rate(value: str) -> Rate:
    """N/second|minute|hour|day, no faster than the kernel's 10000/second."""
    match = RATE_RE.match(str(value).strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid rate {value!r}: use N/second, N/minute, N/hour or N/day")
    rate = Rate(int(match.group(1)), match.group(2))
    if limit_interval(rate) == 0:
        most = XT_LIMIT_SCALE * _UNIT_SECONDS[rate.unit]
        raise ValueError(
            f"rate {rate} is faster than the kernel allows: at most 10000/second "
            f"({most}/{rate.unit})"
        )
    return rate


def limit_interval(rate: Rate) -> int:
    """The interval between packets as xt_limit stores it (1/10000 s; 0 = too fast)."""
    return XT_LIMIT_SCALE * _UNIT_SECONDS[rate.unit] // rate.count


def check_limit_burst(rate: Rate, burst: int | None) -> None:
    """ValueError when the kernel would refuse `rate` with `burst` (None: iptables' 5)."""
    burst = LIMIT_BURST_DEFAULT if burst is None else burst
    if not 1 <= burst <= BURST_MAX:
        raise ValueError(f"burst must be a whole number 1-{BURST_MAX}")
    if (
        limit_interval(rate) * burst // XT_LIMIT_SCALE > LIMIT_SPAN_MAX
        or 1_000_000 * _UNIT_SECONDS[rate.unit] // rate.count * burst > HASHLIMIT_SPAN_MAX_US
    ):
        most = max(1, LIMIT_SPAN_MAX * rate.count // _UNIT_SECONDS[rate.unit])
        raise ValueError(
            f"rate {rate} with burst {burst} overflows the kernel's limit match "
            f"(interval × burst at most {LIMIT_SPAN_MAX} s): use a burst of at most "
            f"{most}, or a faster rate"
        )


def parse_interface(value: str) -> str:
    """A kernel interface name (dev_valid_name: shorter than IFNAMSIZ, no '/', no
    whitespace, not '.' or '..'), or a prefix ending in the wildcard '+'."""
    if (
        not isinstance(value, str)
        or len(value) >= IFNAMSIZ
        or value in (".", "..")
        or not INTERFACE_RE.match(value)
    ):
        raise ValueError(
            f"invalid interface name {value!r}: at most {IFNAMSIZ - 1} characters (a '+' "
            "wildcard at the end included), letters, digits, '_', '.', ':', '@', '-', "
            "not '.' or '..'"
        )
    return value


def parse_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: one of {', '.join(choices)}")
    return value


# Unicode line and paragraph separators (U+2028, U+2029): line breaks to str.splitlines
_LINE_BREAKS = ("Zl", "Zp")


def log_prefix_problem(value: str) -> str | None:
    """Why the kernel would not hold `value` exactly as a log prefix on every dataplane, or
    None. xt_LOG keeps 29 bytes and iptables cuts a longer prefix silently (mid-character,
    for UTF-8); nft's quoted strings have no escapes, so `"` cannot be written and `$`
    starts a variable (`nft -f` fails); a control character or a Unicode line or paragraph
    separator would split or forge log lines (iptables-restore ends the line at a carriage
    return; `str.splitlines` at U+2028); iptables-restore refuses an empty `--log-prefix`
    (a document leaves the key out for the default). Everything else is carried: the
    iptables renderer escapes `\\` and `'` as iptables-save does, nft takes it verbatim."""
    if not value:
        return "log prefix cannot be empty: leave it out for the default (rpt:<rule id> )"
    try:
        size = len(value.encode())
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 spelling at all
        return "log prefix must be valid Unicode text"
    if size > LOG_PREFIX_MAX:
        return f"log prefix must be at most {LOG_PREFIX_MAX} bytes (UTF-8), the kernel's limit"
    if '"' in value:
        return 'log prefix cannot hold quotes (")'
    if "$" in value:
        return "log prefix cannot hold '$' (nft reads it as a variable)"
    if any(unicodedata.category(c) == "Cc" for c in value):
        return "log prefix cannot hold control characters (tab, newline, ...)"
    if any(unicodedata.category(c) in _LINE_BREAKS for c in value):
        return "log prefix cannot hold line or paragraph separators (U+2028, U+2029)"
    return None


def parse_log_prefix(value: str) -> str:
    problem = log_prefix_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value
