"""A bundle as the agent holds it: checked against the contract, parsed into tables and
sets, and the byte form it is stored in."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from rampart_agent.ruleset import BundleError, SetBlock, Table, parse_ipsets, parse_restore
from rampart_contract.bundle_hash import ACCEPTED_FORMATS, BUNDLE_FIELDS, bundle_hash


@dataclass
class Bundle:
    """A parsed bundle: the restore text split into tables, the sets into blocks."""

    raw: dict[str, Any]
    hash: str
    tables: dict[str, dict[str, Table]]  # family -> table -> Table
    sets: dict[str, SetBlock]
    set_entries: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any, verify_hash: bool = True, previous: Bundle | None = None) -> Bundle:
        """Check and parse; `previous` (the bundle applied before) lends the lines of the
        chains that did not change (see `parse_restore`)."""
        if not isinstance(raw, dict):
            raise BundleError("bundle must be a JSON object")
        # a stored bundle (already checked when it came) may be of the previous format
        formats = ACCEPTED_FORMATS if verify_hash else (1, *ACCEPTED_FORMATS)
        if raw.get("format") not in formats:
            raise BundleError(
                f"unsupported bundle format {raw.get('format')!r} (expected one of "
                f"{', '.join(map(str, ACCEPTED_FORMATS))})"
            )
        unknown = sorted(set(map(str, raw)) - BUNDLE_FIELDS)
        if unknown:
            raise BundleError(f"unknown bundle field {unknown[0]!r}")
        for key in ("device", "iptables_v4", "iptables_v6", "ipsets", "nft"):
            if not isinstance(raw.get(key, ""), str):
                raise BundleError(f"bundle field {key} must be a string")
        for key in ("chains", "sets"):
            if not isinstance(raw.get(key) or {}, dict):
                raise BundleError(f"bundle field {key} must be an object")
        digest = bundle_hash(raw) if verify_hash else str(raw.get("hash"))
        if verify_hash and raw.get("hash") != digest:
            raise BundleError("bundle hash does not match its content")
        held = previous.raw if previous else {}
        nft = raw.get("nft") or ""
        if nft != (held.get("nft") or ""):  # the held bundle's script passed this check
            check_nft_script(nft)
        sets = parse_ipsets(raw.get("ipsets", ""), previous.sets if previous else None)
        meta = raw.get("sets") or {}
        entries = {name: block.entries for name, block in sets.items()}
        for name, block in sets.items():
            declared = (meta.get(name) or {}).get("entries")
            if declared is not None and declared != block.entries:
                raise BundleError(
                    f"set {name}: {block.entries} entries, the bundle says {declared}"
                )
        return cls(
            raw=raw,
            hash=digest,
            tables={family: _tables(raw, family, previous) for family in ("v4", "v6")},
            sets=sets,
            set_entries=entries,
        )

    @property
    def nft(self) -> str | None:
        """The `nft -f` script of the native nftables dataplane (None: not compiled for it)."""
        return self.raw.get("nft") or None

    @classmethod
    def empty(cls) -> Bundle:
        return cls(raw={}, hash="", tables={"v4": {}, "v6": {}}, sets={})

    def chain_count(self) -> int:
        return sum(len(t.chains) for fam in self.tables.values() for t in fam.values())


def _tables(raw: dict[str, Any], family: str, previous: Bundle | None) -> dict[str, Table]:
    """The tables of one family: the held bundle's when the text is the same (a change of
    set elements alone: one memcmp of ~2 MB instead of ~10 ms of parsing 50k rules);
    parsed, lending the held bundle's unchanged chains, otherwise."""
    text = raw.get(f"iptables_{family}", "")
    held = previous.tables.get(family) if previous else None
    if (
        held is not None
        and previous is not None
        and text == previous.raw.get(f"iptables_{family}", "")
    ):
        return held
    return parse_restore(text, held)


NFT_HEAD = "table inet rampart\ndelete table inet rampart\ntable inet rampart {\n"
# what reaches outside the table's block without a brace (a file, a variable, a comment)
NFT_OUTSIDE = re.compile(r"\b(include|define|redefine|undefine)\b|[#$]")
# the words NFT_OUTSIDE looks for contain one of these (a cheap look first: the regex
# takes ~45 ms over a 10k-rule script)
NFT_OUTSIDE_HINTS = ("include", "define", "#", "$")
NOT_BRACE = bytes(b for b in range(256) if b not in b"{}")  # UTF-8: no other byte is one
_DEPTH = {ord("{"): 1, ord("}"): -1}


def check_nft_script(text: str) -> None:
    """The `nft` script may recreate Rampart's own table and nothing else: the three lines
    of the delete-and-recreate idiom, then one block that the script's last `}` closes.
    nft ignores indentation and line breaks, so the block's end is found by its braces
    outside quoted strings (nft reads those verbatim to the next `"`), not by what starts
    a line.

    Checked in whole-text passes (a 10k-rule script, ~18k quoted comments: ~4 ms instead
    of ~55 ms part by part): the parts between quoted strings are joined by NUL, which,
    like a part's own ends, is no word character, no brace and no blank.
    """
    if not text:
        return
    refused = BundleError("bundle field nft may only recreate table inet rampart")
    if not text.startswith(NFT_HEAD):
        raise refused
    body = text[len(NFT_HEAD) :]
    if body.count('"') % 2:
        raise refused
    unquoted = "\0".join(body.split('"')[::2])  # the parts between quoted strings
    if any(h in unquoted for h in NFT_OUTSIDE_HINTS) and NFT_OUTSIDE.search(unquoted):
        raise refused
    # the table's block closes at the last brace, with nothing but blanks after it
    end = unquoted.rfind("}")
    if end < 0 or unquoted[end + 1 :].strip():
        raise refused
    # ... and not before: every brace up to it balanced, never below the table's depth
    braces = unquoted[:end].encode("utf-8", "surrogatepass").translate(None, NOT_BRACE)
    if (
        2 * braces.count(b"{") != len(braces)
        or min(accumulate(map(_DEPTH.__getitem__, braces), initial=0)) < 0
    ):
        raise refused


def bundle_json(raw: dict[str, Any]) -> bytes:
    """A bundle as stored: without the console's rule index, which the agent never uses."""
    return json.dumps(
        {k: v for k, v in raw.items() if k != "rules"}, separators=(",", ":"), ensure_ascii=False
    ).encode()
