"""IR sets → `ipset restore` text: create lines sized to the content, then the entries.

Address sets (`IpSet`, a long address list of one rule) are `hash:net`; the sets of
set-compiled blocks (`LookupSet`) have `counters` and `comment`, and each element's comment
is its policy rule's tag, so the agent counts per rule from the elements.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

from .ir import IpSet, LookupSet
from .nets import Net

DEFAULT_MAXELEM = 65536
MIN_HASHSIZE = 1024
_HOST_BITS = {4: 32, 6: 128}
_VALUES, _TAG, _TEXT = attrgetter("values"), attrgetter("tag"), attrgetter("text")


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def set_sizes(entries: int) -> tuple[int, int]:
    """(hashsize, maxelem): the kernel's default maxelem (65,536) fails at 100k entries."""
    return max(MIN_HASHSIZE, _pow2(entries // 2)), max(DEFAULT_MAXELEM, _pow2(entries))


def set_meta(ipset: IpSet | LookupSet) -> dict:
    if isinstance(ipset, LookupSet):
        return lookup_meta(ipset)
    hashsize, maxelem = set_sizes(len(ipset.nets))
    return {
        "family": "inet" if ipset.family == 4 else "inet6",
        "type": "hash:net",
        "entries": len(ipset.nets),
        "hashsize": hashsize,
        "maxelem": maxelem,
    }


def lookup_meta(lset: LookupSet) -> dict:
    """A lookup set's metadata; `entries` counts kernel elements (port ranges expanded)."""
    size = lset.size
    hashsize, maxelem = set_sizes(size)
    return {
        "family": "inet" if lset.family == 4 else "inet6",
        "type": lset.kind,
        "entries": size,
        "hashsize": hashsize,
        "maxelem": maxelem,
        "counters": True,
        "comment": True,
        "flags": lset.flags,
    }


def _host(net: Net) -> str:
    return net.text.partition("/")[0]


# an address dimension's spelling by its ipset kind: an `ip` one's host without its length
_ADDR_TEXT: dict[str, Callable[[Net], str]] = {"ip": _host, "net": _TEXT}


def _element_lines(lset: LookupSet) -> list[str]:
    """`add` lines of a lookup set (kept in its memo: a warm compile reuses the set)."""
    lines = lset.memo.get("lines")
    if lines is None:
        lines = lset.memo["lines"] = _render_elements(lset)
    return lines


def _render_elements(lset: LookupSet) -> list[str]:
    """`add NAME 198.18.0.0/24,tcp:80-90 comment "TAG"` lines. The frequent shapes (a port
    after an address, or between two) in one f-string per element; the others a
    dimension of every element at a time (`_column`)."""
    name = lset.name
    if lset.kind == "hash:net,port":
        return [
            f'add {name} {net.text},{p.proto}:{p.lo} comment "{tag}"'
            if p.lo == p.hi
            else f'add {name} {net.text},{p.proto}:{p.lo}-{p.hi} comment "{tag}"'
            for (net, p), tag, _ in lset.elements
        ]
    if not lset.elements:
        return []
    kinds = lset.kind.split(":")[1].split(",")
    if len(kinds) == 3 and lset.dims[1] == "dport":  # an address, a port, an address
        first, last = _ADDR_TEXT.get(kinds[0], _TEXT), _ADDR_TEXT.get(kinds[2], _TEXT)
        return [
            f'add {name} {first(a)},{p.proto}:{p.lo},{last(b)} comment "{tag}"'
            if p.lo == p.hi
            else f'add {name} {first(a)},{p.proto}:{p.lo}-{p.hi},{last(b)} comment "{tag}"'
            for (a, p, b), tag, _ in lset.elements
        ]
    transposed = zip(*map(_VALUES, lset.elements), strict=True)  # one tuple per dimension
    dims = zip(lset.dims, kinds, transposed, strict=True)
    columns = [_column(dim, kind, values) for dim, kind, values in dims]
    keys = columns[0] if len(columns) == 1 else list(map(",".join, zip(*columns, strict=True)))
    return [
        f'add {name} {key} comment "{tag}"'
        for key, tag in zip(keys, map(_TAG, lset.elements), strict=True)
    ]


def _column(dim: str, kind: str, values: tuple) -> list[str]:
    """One dimension's values: a port (ir.SHAPES: the `dport` dimension) as `proto:port`,
    an `ip` dimension's host without its prefix length, a net as it is."""
    if dim == "dport":
        return [f"{p.proto}:{p.lo}" if p.lo == p.hi else f"{p.proto}:{p.lo}-{p.hi}" for p in values]
    return list(map(_ADDR_TEXT.get(kind, _TEXT), values))


def render_sets(sets: dict[str, IpSet], lookups: dict[str, LookupSet] | None = None) -> str:
    """Sets in name order; each a `create` line, then one `add` line per entry."""
    lines: list[str] = []
    every: dict[str, IpSet | LookupSet] = {**sets, **(lookups or {})}
    for name in sorted(every):
        one = every[name]
        meta = set_meta(one)
        create = (
            f"create {name} {meta['type']} family {meta['family']} "
            f"hashsize {meta['hashsize']} maxelem {meta['maxelem']}"
        )
        if isinstance(one, LookupSet):
            lines.append(create + " counters comment")
            lines.extend(_element_lines(one))
            continue
        lines.append(create)
        prefix = f"add {name} "
        lines.extend([prefix + net.text for net in one.nets])  # nets.Net
    return "\n".join(lines) + "\n" if lines else ""
