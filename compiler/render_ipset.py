"""IR sets → `ipset restore` text: create lines sized to the content, then the entries."""

from __future__ import annotations

from .ir import IpSet

DEFAULT_MAXELEM = 65536
MIN_HASHSIZE = 1024


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def set_sizes(entries: int) -> tuple[int, int]:
    """(hashsize, maxelem): the kernel's default maxelem (65,536) fails at 100k entries."""
    return max(MIN_HASHSIZE, _pow2(entries // 2)), max(DEFAULT_MAXELEM, _pow2(entries))


def set_meta(ipset: IpSet) -> dict:
    hashsize, maxelem = set_sizes(len(ipset.nets))
    return {
        "family": "inet" if ipset.family == 4 else "inet6",
        "type": "hash:net",
        "entries": len(ipset.nets),
        "hashsize": hashsize,
        "maxelem": maxelem,
    }


def render_sets(sets: dict[str, IpSet]) -> str:
    """Sets in name order; each a `create` line, then one `add` line per network."""
    lines: list[str] = []
    for name in sorted(sets):
        meta = set_meta(sets[name])
        lines.append(
            f"create {name} hash:net family {meta['family']} "
            f"hashsize {meta['hashsize']} maxelem {meta['maxelem']}"
        )
        prefix = f"add {name} "
        lines.extend([prefix + net.text for net in sets[name].nets])  # nets.Net
    return "\n".join(lines) + "\n" if lines else ""
