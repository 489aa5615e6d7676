"""IR sets → `ipset restore` text: create lines sized to the content, then the entries.

Address sets (`IpSet`, a long address list of one rule) are `hash:net`; the sets of
set-compiled blocks (`LookupSet`) have `counters` and `comment`, and each element's comment
is its policy rule's tag, so the agent counts per rule from the elements.
"""

from __future__ import annotations

from .ir import IpSet, LookupSet, PortElem

DEFAULT_MAXELEM = 65536
MIN_HASHSIZE = 1024
_HOST_BITS = {4: 32, 6: 128}


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


def element_text(lset: LookupSet, values: tuple) -> str:
    """One element as `ipset add` takes it: `198.18.0.0/24,tcp:80-90`; the host of an
    `ip` dimension without its prefix length."""
    kind = lset.kind.split(":")[1].split(",")
    parts = []
    for dim_kind, value in zip(kind, values, strict=True):
        if isinstance(value, PortElem):
            port = str(value.lo) if value.lo == value.hi else f"{value.lo}-{value.hi}"
            parts.append(f"{value.proto}:{port}")
        elif dim_kind == "ip":
            parts.append(value.text.partition("/")[0])
        else:
            parts.append(value.text)
    return ",".join(parts)


def _element_lines(lset: LookupSet) -> list[str]:
    """`add` lines of a lookup set (kept in its memo: a warm compile reuses the set)."""
    lines = lset.memo.get("lines")
    if lines is None:
        lines = lset.memo["lines"] = _render_elements(lset)
    return lines


def _render_elements(lset: LookupSet) -> list[str]:
    """The frequent net,port shapes without the general path."""
    name = lset.name
    if lset.kind == "hash:net,port":
        return [
            f'add {name} {net.text},{p.proto}:{p.lo} comment "{tag}"'
            if p.lo == p.hi
            else f'add {name} {net.text},{p.proto}:{p.lo}-{p.hi} comment "{tag}"'
            for (net, p), tag, _ in lset.elements
        ]
    return [f'add {name} {element_text(lset, e.values)} comment "{e.tag}"' for e in lset.elements]


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
