"""Which dataplane `auto` (the agent's default) runs on: the rule of docs/agent.md,
"Choosing the dataplane".

The native nftables table where the host runs nftables (the `nft` tool works, the kernel
has nf_tables, and the host's iptables, if any, is the nf_tables variant with no rules in
the legacy tables); iptables-legacy where the host's iptables is legacy or others' rules
sit in the legacy tables (legacy and nf_tables rules side by side is what breaks hosts).
An agent whose confirmed bundle carries no `nft` script (compiled for iptables) stays on
iptables: the native dataplane could not restore it, and would leave those rules in place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rampart_agent.dataplane.iptables import detect_backend, foreign_rules
from rampart_agent.dataplane.nft import BACKEND as NATIVE
from rampart_agent.runner import CommandError, Runner

BACKENDS = ("legacy", "nft", NATIVE)
# `held`: the confirmed bundle carries its `nft` script (native bundles also carry the
# iptables texts) or not (compiled for iptables only)
HELD_NATIVE, HELD_IPTABLES = "nft", "iptables"


@dataclass(frozen=True)
class Choice:
    """A dataplane kind ('legacy', 'nft' or 'nft-native') and why, for the log."""

    kind: str
    reason: str


def nft_works(runner: Runner) -> str | None:
    """None when `nft list tables` answers (tool installed, kernel with nf_tables, allowed),
    else why not."""
    try:
        res = runner.run(["nft", "list", "tables"], check=False)
    except OSError:
        return "no nft tool"
    if res.returncode != 0:
        return f"`nft list tables` failed: {(res.stderr or '').strip()[:120] or res.returncode}"
    return None


def iptables_variant(runner: Runner) -> str | None:
    """'nft' or 'legacy' as `iptables -V` says, None when there is no iptables."""
    try:
        out = runner.run(["iptables", "-V"]).stdout
    except (OSError, CommandError):
        return None
    return "nft" if "nf_tables" in out else "legacy"


def choose(runner: Runner, held: str | None = None) -> Choice:
    """The rule, in order (the first that applies decides):

    1. `RAMPART_AGENT_BACKEND` (legacy, nft, nft-native) names it;
    2. `nft` does not work: the iptables backend `detect_backend` finds;
    3. the confirmed bundle has no `nft` script (`held`): the same, as before;
    4. it has one: nft-native (a start on it removes our iptables rules);
    5. rules not ours in iptables-legacy's tables: legacy;
    6. `iptables -V` says legacy: legacy;
    7. otherwise (nf_tables iptables, or none at all): nft-native.
    """
    forced = os.environ.get("RAMPART_AGENT_BACKEND")
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"RAMPART_AGENT_BACKEND={forced!r}: not one of {', '.join(BACKENDS)}")
        return Choice(forced, "RAMPART_AGENT_BACKEND")
    broken = nft_works(runner)
    if broken:
        return Choice(detect_backend(runner), broken)
    if held == HELD_IPTABLES:
        return Choice(detect_backend(runner), "the confirmed bundle has no nft script")
    if held == HELD_NATIVE:
        return Choice(NATIVE, "the confirmed bundle has its nft script")
    legacy = foreign_rules(runner, "legacy")
    if legacy:
        return Choice("legacy", f"{legacy} rules not ours in iptables-legacy")
    variant = iptables_variant(runner)
    if variant == "legacy":
        return Choice("legacy", "`iptables -V` says legacy")
    return Choice(NATIVE, "the host runs nftables" + ("" if variant else " (no iptables)"))
