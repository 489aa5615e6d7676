"""The `Bundle`: what the compiler hands the agent (docs/bundle-format.md), and its hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from json.encoder import encode_basestring

from .ir import Program, RuleInfo
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
    rules, rules_json = _rules(program.rules)
    body = {"format": FORMAT, "device": program.device,
            "iptables_v4": "".join(texts[4]), "iptables_v6": "".join(texts[6]),
            "ipsets": render_sets(program.sets), "chains": chains,
            "sets": {name: set_meta(s) for name, s in sorted(program.sets.items())},
            "rules": rules}
    digest = _body_hash(body, {"rules": rules_json})
    return Bundle(program.device, body["iptables_v4"], body["iptables_v6"], body["ipsets"],
                  chains, body["sets"], rules, digest, FORMAT, program)


def _rules(infos: dict[str, RuleInfo]) -> tuple[dict, str]:
    """The bundle's `rules` mapping and its canonical JSON, written in one pass.

    `json.dumps(sort_keys=True)` of 50k small dicts costs ~1.3 µs per entry (a sort per
    entry); the entries have four known keys, so they are spelled out here in sorted key
    order (comment, position, ruleset, table), strings escaped by the encoder json itself
    uses, giving the same bytes. test_compile checks it against `canonical_json`.
    """
    rules = {}
    parts = []
    enc = encode_basestring
    names: dict[str, str] = {}
    for rid in sorted(infos):  # already sorted in a Program: a linear check
        ruleset, position, comment, table = infos[rid]
        entry = {"ruleset": ruleset, "position": position, "comment": comment}
        rs_json = names.get(ruleset)
        if rs_json is None:
            rs_json = names[ruleset] = enc(ruleset)
        if table != "filter":
            entry["table"] = table
            parts.append(f'{enc(rid)}:{{"comment":{enc(comment)},"position":{position:d},'
                         f'"ruleset":{rs_json},"table":{enc(table)}}}')
        else:
            parts.append(f'{enc(rid)}:{{"comment":{enc(comment)},"position":{position:d},'
                         f'"ruleset":{rs_json}}}')
        rules[rid] = entry
    return rules, "{" + ",".join(parts) + "}"


def _body_hash(body: dict, spelled: dict[str, str]) -> str:
    """sha256 of `canonical_json(body)`, fed key by key: the 10+ MB document is never
    joined into one string. `spelled` holds values whose canonical JSON is already known."""
    digest = hashlib.sha256(b"{")
    for i, key in enumerate(sorted(body)):
        value = spelled.get(key)
        if value is None:
            value = canonical_json(body[key])
        digest.update(f'{"," if i else ""}{canonical_json(key)}:'.encode())
        digest.update(value.encode())
    digest.update(b"}")
    return digest.hexdigest()
