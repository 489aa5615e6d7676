"""The `Bundle`: what the compiler hands the agent (docs/bundle-format.md), and its hashes."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import datetime

from rampart_contract.bundle_hash import BUNDLE_FORMAT, SETS_BUNDLE_FORMAT, bundle_hash
from rampart_contract.canonical import canonical_text

from .ir import IpSet, LookupSet, Program, RuleInfo
from .render_ipset import render_sets, set_meta
from .render_iptables import render_table
from .render_nft import render_nft

FORMAT = BUNDLE_FORMAT


@dataclass(frozen=True)
class Bundle:
    """One device's compiled policy as the agent receives it (docs/bundle-format.md)."""

    device: str
    iptables_v4: str
    iptables_v6: str
    ipsets: str
    chains: dict
    sets: dict
    hash: str
    format: int = FORMAT
    program: Program | None = field(default=None, repr=False, compare=False)
    # the `nft -f` script of the native nftables dataplane ("": not rendered; see with_nft)
    nft: str = ""

    @functools.cached_property
    def rules(self) -> dict:
        """The console's rule index (uuid -> rule set, position, comment), built when asked
        for: a deploy pushes the bundle without it (50k entries: ~50 ms saved there)."""
        return _rules(self.program.rules) if self.program is not None else {}

    def to_dict(self, rules: bool = True) -> dict:
        """The bundle as JSON data; `rules=False` leaves out the console's rule index
        (what is pushed to an agent, which does not need it; the hash does not cover it)."""
        data = {
            "format": self.format,
            "device": self.device,
            "hash": self.hash,
            "iptables_v4": self.iptables_v4,
            "iptables_v6": self.iptables_v6,
            "ipsets": self.ipsets,
            "chains": self.chains,
            "sets": self.sets,
        }
        if self.nft:
            data["nft"] = self.nft
        if rules:
            data["rules"] = self.rules
        return data

    def to_json(self) -> str:
        """The bundle in canonical JSON (the agent's and the hash's byte form)."""
        return canonical_text(self.to_dict())

    def for_device(self, device: str, now: datetime | None = None) -> Bundle:
        """This bundle as another device with the same compiled policy gets it: the name
        is the only part of a bundle that says which device it is for (the texts never
        name it), so only `device` and the hash change; the texts are shared, not copied.
        What `compile_device` gives that device, without compiling again."""
        body = self.to_dict(rules=False)
        body["device"] = device
        program = self.program
        if program is not None:
            program = replace(program, device=device, now=now or program.now)
        return replace(self, device=device, hash=bundle_hash(body), program=program)


def build_bundle(program: Program) -> Bundle:
    """Render a program; same program in, same bytes out."""
    texts: dict[int, list[str]] = {4: [], 6: []}
    chains: dict = {"v4": {}, "v6": {}}
    for (family, table_name), table in program.tables.items():
        text, hashes = render_table(table)
        texts[family].append(text)
        chains[f"v{family}"][table_name] = hashes
    iptables_v4, iptables_v6 = "".join(texts[4]), "".join(texts[6])
    ipsets = render_sets(program.sets, program.lookups)
    every: dict[str, IpSet | LookupSet] = {**program.sets, **program.lookups}
    sets = {name: set_meta(every[name]) for name in sorted(every)}
    # a bundle with set lookups is of the next format (older agents refuse it), one
    # without is of the format every agent takes
    fmt = SETS_BUNDLE_FORMAT if program.lookups else FORMAT
    body = {
        "format": fmt,
        "device": program.device,
        "iptables_v4": iptables_v4,
        "iptables_v6": iptables_v6,
        "ipsets": ipsets,
        "chains": chains,
        "sets": sets,
    }
    return Bundle(
        program.device,
        iptables_v4,
        iptables_v6,
        ipsets,
        chains,
        sets,
        bundle_hash(body),
        fmt,
        program,
    )


def with_nft(bundle: Bundle) -> Bundle:
    """The bundle with its `nft` script, for an agent on the native nftables dataplane
    (rendered on demand: iptables agents never pay for it). A bundle with it is of the
    sets format (older agents refuse the field rather than ignore it)."""
    if bundle.nft or bundle.program is None:
        return bundle
    body = bundle.to_dict(rules=False)
    body["nft"] = render_nft(bundle.program)
    body["format"] = max(bundle.format, SETS_BUNDLE_FORMAT)
    return replace(bundle, nft=body["nft"], format=body["format"], hash=bundle_hash(body))


def _rules(infos: dict[str, RuleInfo]) -> dict:
    """The bundle's `rules` index: rule uuid -> rule set, 1-based position, comment (and
    `table` for NAT rules)."""
    rules = {}
    for rid in sorted(infos):
        ruleset, position, comment, table = infos[rid]
        entry = {"ruleset": ruleset, "position": position, "comment": comment}
        if table != "filter":
            entry["table"] = table
        rules[rid] = entry
    return rules
