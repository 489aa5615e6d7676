"""The policy documents the benchmarks compile, load and apply (one definition for all)."""

from __future__ import annotations

import ipaddress
import random
import uuid
from datetime import UTC, datetime

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def realistic(n: int, seed: int = 4) -> dict:
    """n rules in one rule set, the mix of shared/reference/README.md: 70 % tcp / 30 % udp,
    source CIDRs /24–/32, 20 % with a destination, single port / range / multiport, 80 %
    accept, a comment and a uuid each (as the console's database gives them)."""
    rnd = random.Random(seed)
    rules = []
    for i in range(n):
        plen = rnd.randint(24, 32)
        base = int(ipaddress.IPv4Address("198.18.0.0")) + rnd.randrange(2**17)
        src = ipaddress.IPv4Network((base >> (32 - plen) << (32 - plen), plen))
        kind = rnd.random()
        if kind < 0.6:
            ports = [str(rnd.randint(1, 65535))]
        elif kind < 0.8:
            lo = rnd.randint(1024, 60000)
            ports = [f"{lo}-{lo + rnd.randint(1, 500)}"]
        else:
            ports = [str(p) for p in rnd.sample(range(1, 65535), rnd.randint(2, 8))]
        rule = {
            "id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "chain": "input",
            "action": "accept" if rnd.random() < 0.8 else "drop",
            "sources": [str(src)],
            "protocol": "tcp" if rnd.random() < 0.7 else "udp",
            "dports": ports,
            "comment": f"bench rule {i}",
        }
        if rnd.random() < 0.2:
            rule["destinations"] = [f"198.19.{rnd.randrange(256)}.{rnd.randrange(256)}"]
        rules.append(rule)
    return {
        "version": 1,
        "rulesets": [{"name": "bench", "rules": rules}],
        "devices": [{"name": "bench", "rulesets": ["bench"]}],
    }


def one_rule_changed(data: dict, at: int | None = None) -> dict:
    """The same document with one rule's action flipped (the middle one by default)."""
    rules = [dict(r) for r in data["rulesets"][0]["rules"]]
    rule = rules[len(rules) // 2 if at is None else at]
    rule["action"] = "drop" if rule["action"] != "drop" else "accept"
    return {**data, "rulesets": [{**data["rulesets"][0], "rules": rules}]}


def big_group(n: int = 100_000, last: str | None = None) -> dict:
    """One rule dropping everything from an n-member address group (n hosts; `last`
    replaces the last member, for an update of the group). IPv6 hosts of 2001:2::/48, every
    other one so that nothing collapses: an IPv4 group this large cannot stay inside
    198.18.0.0/15 (at most 65,536 separate blocks fit there)."""
    base = int(ipaddress.IPv6Address("2001:2::"))
    members = [str(ipaddress.IPv6Address(base + 2 * i)) for i in range(n)]
    if last is not None:
        members[-1] = last
    return {
        "version": 1,
        "address_groups": [{"name": "huge", "members": members}],
        "rulesets": [
            {"name": "block", "rules": [{"chain": "input", "action": "drop", "sources": ["huge"]}]}
        ],
        "devices": [{"name": "bench", "rulesets": ["block"]}],
    }
