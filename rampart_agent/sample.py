"""Build bundles in the documented format without the compiler.

Used by the tests, the benchmark and the demo: they must not depend on the console's
compiler, and a hand-built bundle shows exactly what the agent relies on.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
from typing import Any

from rampart_agent.protocol import BUNDLE_FORMAT, bundle_hash


def _restore_text(tables: dict[str, dict[str, Any]]) -> str:
    out: list[str] = []
    for tname, spec in tables.items():
        chains: dict[str, list[str]] = spec.get("chains", {})
        jumps: dict[str, list[str]] = spec.get("jumps", {})
        out.append(f"*{tname}")
        out += [f":{name} - [0:0]" for name in chains]
        for builtin, targets in jumps.items():
            out += [f"-A {builtin} -m comment --comment rpt:jump -j {t}" for t in targets]
        for name, rules in chains.items():
            out += [f"-A {name} {r}" for r in rules]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def _chain_hashes(tables: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        tname: {
            name: hashlib.sha256("\n".join(f"-A {name} {r}" for r in rules).encode()).hexdigest()
            for name, rules in spec.get("chains", {}).items()
        }
        for tname, spec in tables.items()
    }


def make_bundle(
    v4: dict[str, dict[str, Any]] | None = None,
    v6: dict[str, dict[str, Any]] | None = None,
    sets: dict[str, list[str]] | None = None,
    device: str = "test",
) -> dict[str, Any]:
    """A bundle from {table: {"chains": {name: [rule specs]}, "jumps": {builtin: [chain]}}}.

    `sets` maps a set name (rpt-4-… / rpt-6-…) to its entries; create lines are sized.
    """
    v4 = v4 or {}
    v6 = v6 or {}
    ipset_lines: list[str] = []
    meta: dict[str, Any] = {}
    for name in sorted(sets or {}):
        entries = (sets or {})[name]
        family = "inet6" if name.startswith("rpt-6-") else "inet"
        maxelem = max(65536, 1 << (len(entries) * 2 - 1).bit_length())
        hashsize = max(1024, 1 << max(len(entries) - 1, 1).bit_length())
        ipset_lines.append(
            f"create {name} hash:net family {family} hashsize {hashsize} maxelem {maxelem}"
        )
        ipset_lines += [f"add {name} {e}" for e in entries]
        meta[name] = {
            "family": family,
            "type": "hash:net",
            "entries": len(entries),
            "hashsize": hashsize,
            "maxelem": maxelem,
        }
    bundle: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "device": device,
        "iptables_v4": _restore_text(v4),
        "iptables_v6": _restore_text(v6),
        "ipsets": "\n".join(ipset_lines) + "\n" if ipset_lines else "",
        "chains": {"v4": _chain_hashes(v4), "v6": _chain_hashes(v6)},
        "sets": meta,
        "rules": {},
    }
    bundle["hash"] = bundle_hash(bundle)
    return bundle


def set_name(family: int, entries: list[str]) -> str:
    """Content-derived set name, as the compiler names them."""
    digest = hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:12]
    return f"rpt-{family}-{digest}"


def realistic_rules(n: int, seed: int = 1, v6: bool = False) -> list[str]:
    """n rules like the reference measurements: 70 % tcp / 30 % udp, /24–/32 sources,
    20 % with a destination, single port / range / multiport, a comment each, 80 % ACCEPT."""
    rng = random.Random(seed)
    base = ipaddress.ip_network("2001:2::/48" if v6 else "198.18.0.0/15")
    rules = []
    for i in range(n):
        proto = "tcp" if rng.random() < 0.7 else "udp"
        if v6:
            prefix = rng.choice([64, 96, 112, 128])
            addr = base.network_address + rng.randrange(1 << 64) * (1 << 16)
            src = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
        else:
            prefix = rng.randint(24, 32)
            addr = base.network_address + rng.randrange(base.num_addresses)
            src = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
        parts = [f"-s {src}"]
        if rng.random() < 0.2:
            parts.append(f"-d {base.network_address + rng.randrange(1 << 16)}")
        kind = rng.random()
        if kind < 0.6:
            parts.append(f"-p {proto} -m {proto} --dport {rng.randint(1, 65535)}")
        elif kind < 0.8:
            lo = rng.randint(1, 60000)
            parts.append(f"-p {proto} -m {proto} --dport {lo}:{lo + rng.randint(1, 5000)}")
        else:
            ports = ",".join(str(rng.randint(1, 65535)) for _ in range(3))
            parts.append(f"-p {proto} -m multiport --dports {ports}")
        uuid = f"{i:08x}-0000-4000-8000-{seed:012x}"
        parts.append(f'-m comment --comment "rpt:{uuid}:{i & 0xFFFFFFFF:08x}"')
        parts.append("-j ACCEPT" if rng.random() < 0.8 else "-j DROP")
        rules.append(" ".join(parts))
    return rules
