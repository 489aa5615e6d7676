"""Fast CIDR blocks for the compiler's hot path.

`ipaddress` objects cost ~3 µs to build and ~2 µs to print; a 100k-entry group would spend
most of its compile time there. `Net` is an integer interval with its canonical text
computed once. Anything unusual (ranges, bad input) goes through `values.parse_address`,
so the accepted inputs and the error messages stay those of `values.py`.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address
from operator import attrgetter

from . import values as V

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_BITS = {4: 32, 6: 128}
_first = attrgetter("first")
_AF_INET, _inet_pton, _from_bytes = socket.AF_INET, socket.inet_pton, int.from_bytes


class Net:
    """A CIDR block: `first`/`last` as integers, `text` as iptables-save prints it."""

    __slots__ = ("version", "first", "last", "plen", "text")

    def __init__(self, version: int, first: int, plen: int, text: str | None = None):
        self.version = version
        self.first = first
        self.plen = plen
        self.last = first | ((1 << (_BITS[version] - plen)) - 1)
        self.text = text or f"{_ntop(version, first)}/{plen}"

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Net({self.text})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Net) and (self.version, self.first, self.plen) == (
            other.version,
            other.first,
            other.plen,
        )

    def __hash__(self) -> int:
        return hash((self.version, self.first, self.plen))

    def __contains__(self, addr: int | IPv4Address | IPv6Address) -> bool:
        """`ipaddress` address (of the same family) or int."""
        if isinstance(addr, int):
            return self.first <= addr <= self.last
        return addr.version == self.version and self.first <= int(addr) <= self.last

    @property
    def num_addresses(self) -> int:
        return self.last - self.first + 1

    def is_whole(self) -> bool:
        return self.plen == 0


def _ntop(version: int, value: int) -> str:
    return socket.inet_ntop(_AF[version], value.to_bytes(_BITS[version] // 8, "big"))


def from_ipaddress(net: V.IPNetwork) -> Net:
    return Net(net.version, int(net.network_address), net.prefixlen)


def _parse_v4(text: str) -> tuple[Net] | None:
    """`parse` for an IPv4 host or CIDR in canonical dotted quads (nearly every literal of
    a large policy), without the family dispatch; None for anything else, which `parse`
    then takes the general way (a property test compares the two)."""
    addr, slash, plen_text = text.partition("/")
    try:
        value = _from_bytes(_inet_pton(_AF_INET, addr), "big")
    except OSError:
        return None
    if not slash:
        # inet_pton takes only canonical dotted quads, so the text can be reused
        return (Net(4, value, 32, f"{addr}/32"),)
    if not plen_text.isdecimal():
        return None
    plen = int(plen_text)
    if plen > 32 or value & ((1 << (32 - plen)) - 1):
        return None
    return (Net(4, value, plen, f"{addr}/{plen}"),)


def parse(text: str) -> tuple[Net, ...]:
    """An address, CIDR or range as CIDR blocks; `ValueError` as `values.parse_address`."""
    text = text.strip()
    if "-" not in text and ":" not in text:
        found = _parse_v4(text)
        if found is not None:
            return found
    if "-" not in text:
        addr, slash, plen_text = text.partition("/")
        version = 6 if ":" in addr else 4
        try:
            value = int.from_bytes(socket.inet_pton(_AF[version], addr), "big")
        except OSError:
            value = None
        if value is not None and "%" not in addr:
            bits = _BITS[version]
            if not slash:
                # inet_pton takes only canonical dotted quads, so the text can be reused
                return (Net(version, value, bits, f"{addr}/32" if version == 4 else None),)
            if plen_text.isdecimal() and int(plen_text) <= bits:
                plen = int(plen_text)
                if value & ((1 << (bits - plen)) - 1) == 0:
                    return (Net(version, value, plen, f"{addr}/{plen}" if version == 4 else None),)
    # slow path: ranges, leading zeros, errors (with the shared wording)
    return tuple(from_ipaddress(n) for n in V.address_networks(V.parse_address(text)))


def interval_blocks(version: int, first: int, last: int) -> list[Net]:
    """The fewest CIDR blocks covering [first, last]."""
    bits = _BITS[version]
    out = []
    while first <= last:
        size = (first & -first).bit_length() - 1 if first else bits
        while size > 0 and first + (1 << size) - 1 > last:
            size -= 1
        out.append(Net(version, first, bits - size))
        first += 1 << size
    return out


def collapse(nets: list[Net]) -> tuple[Net, ...]:
    """Overlaps merged and adjacent blocks joined; one family; sorted."""
    if len(nets) <= 1:
        return tuple(nets)
    ordered = sorted(nets, key=_first)
    out: list[Net] = []
    version = ordered[0].version
    run_first, run_last, run = ordered[0].first, ordered[0].last, [ordered[0]]
    for net in ordered[1:]:
        if net.first <= run_last + 1:
            if net.last > run_last:
                run_last = net.last
            run.append(net)
            continue
        out.extend(_emit(version, run_first, run_last, run))
        run_first, run_last, run = net.first, net.last, [net]
    out.extend(_emit(version, run_first, run_last, run))
    return tuple(out)


def _emit(version: int, first: int, last: int, run: list[Net]) -> list[Net]:
    head = run[0]
    if head.first == first and head.last == last:
        return [head]
    return interval_blocks(version, first, last)


def _intervals(nets: tuple[Net, ...] | list[Net]) -> list[tuple[int, int]]:
    """Sorted, merged [first, last] intervals of collapsed-or-not blocks of one family."""
    out: list[list[int]] = []
    for net in sorted(nets, key=_first):
        if out and net.first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], net.last)
        else:
            out.append([net.first, net.last])
    return [(a, b) for a, b in out]


def _blocks(version: int, intervals: list[tuple[int, int]]) -> tuple[Net, ...]:
    return tuple(n for a, b in intervals for n in interval_blocks(version, a, b))


def intersect(a: tuple[Net, ...], b: tuple[Net, ...]) -> tuple[Net, ...]:
    """The addresses in both (one family), as the fewest CIDR blocks."""
    if not a or not b:
        return ()
    left, right = _intervals(a), _intervals(b)
    out, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        lo, hi = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return _blocks(a[0].version, out)


def subtract(a: tuple[Net, ...], b: tuple[Net, ...]) -> tuple[Net, ...]:
    """The addresses of `a` not in `b` (one family), as the fewest CIDR blocks."""
    if not a:
        return ()
    out: list[tuple[int, int]] = []
    holes = _intervals(b)
    for first, last in _intervals(a):
        for lo, hi in holes:
            if hi < first or lo > last:
                continue
            if lo > first:
                out.append((first, lo - 1))
            first = hi + 1
            if first > last:
                break
        if first <= last:
            out.append((first, last))
    return _blocks(a[0].version, out)
