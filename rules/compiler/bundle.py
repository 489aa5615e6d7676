"""The `Bundle`: what the compiler hands the agent (docs/bundle-format.md), and its hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .ir import Program
from .render_ipset import render_sets, set_meta
from .render_iptables import render_table

FORMAT = 1


def canonical_json(data: object) -> str:
    """The one JSON spelling hashes are computed over (sorted keys, no spaces)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Bundle:
    device: str
    iptables_v4: str
    iptables_v6: str
    ipsets: str
    chains: dict
    sets: dict
    rules: dict
    hash: str
    format: int = FORMAT
    program: Program | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"format": self.format, "device": self.device, "hash": self.hash,
                "iptables_v4": self.iptables_v4, "iptables_v6": self.iptables_v6,
                "ipsets": self.ipsets, "chains": self.chains, "sets": self.sets,
                "rules": self.rules}

    def to_json(self) -> str:
        return canonical_json(self.to_dict())


def build_bundle(program: Program) -> Bundle:
    """Render a program; same program in, same bytes out."""
    texts: dict[int, list[str]] = {4: [], 6: []}
    chains: dict = {"v4": {}, "v6": {}}
    for (family, table_name), table in program.tables.items():
        text, hashes = render_table(table)
        texts[family].append(text)
        chains[f"v{family}"][table_name] = hashes
    rules = {}
    for rid, (ruleset, position, comment, table) in program.rules.items():
        entry = {"ruleset": ruleset, "position": position, "comment": comment}
        if table != "filter":
            entry["table"] = table
        rules[rid] = entry
    body = {"format": FORMAT, "device": program.device,
            "iptables_v4": "".join(texts[4]), "iptables_v6": "".join(texts[6]),
            "ipsets": render_sets(program.sets), "chains": chains,
            "sets": {name: set_meta(s) for name, s in sorted(program.sets.items())},
            "rules": rules}
    digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()
    return Bundle(program.device, body["iptables_v4"], body["iptables_v6"], body["ipsets"],
                  chains, body["sets"], rules, digest, FORMAT, program)
