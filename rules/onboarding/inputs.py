"""What was given, when it is not an iptables-save dump (pure: no Django).

An empty dump or another tool's output is refused with what it looks like and what is
expected, rather than onboarded as an empty rule set (a host whose rules live in
nftables would lose every one of them).
"""

from __future__ import annotations

import re

EXPECTED = (
    "expected the output of `iptables-save` (or `ip6tables-save`): lines like '*filter', "
    "':INPUT ACCEPT [0:0]', '-A INPUT -p tcp --dport 22 -j ACCEPT', 'COMMIT'; or, for an "
    "nftables host, the JSON of `nft -j list ruleset`"
)
_NFT = re.compile(r"^\s*(table|chain|flush ruleset|define|add (table|chain|rule))\b")


class NotADump(ValueError):
    """The text is empty or not iptables-save output; the message says what it is."""


def check_dump(text: str) -> None:
    """Raise NotADump unless `text` has at least one table of iptables-save output."""
    lines = [line.strip() for line in text.splitlines()]
    content = [line for line in lines if line and not line.startswith("#")]
    if not content:
        raise NotADump(
            "the dump is empty: iptables-save printed no tables, so the host has no iptables "
            "rules. A host whose firewall lives in nftables (firewalld's default backend, a "
            "plain nftables host) keeps its rules in nftables: give `nft -j list ruleset` "
            "(JSON); " + EXPECTED
        )
    if any(line.startswith("*") for line in content) or any(
        line.startswith(("-A ", "--append ")) for line in content
    ):
        return
    first = content[0][:80]
    if any(_NFT.match(line) for line in content[:20]):
        raise NotADump(
            "given the output of `nft list ruleset` (nftables, not iptables): its text "
            "is not read; use `nft -j list ruleset` (the same rules as JSON); " + EXPECTED
        )
    what = f"{len(content)} line(s), none of them iptables-save's (first: {first!r})"
    raise NotADump(f"given {what}; {EXPECTED}")
