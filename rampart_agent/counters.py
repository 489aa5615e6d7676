"""Rule counters per rule uuid, and what the agent's own rewrites take from them.

The status sums the kernel's counters per uuid from the `rpt:<uuid>:<hash>` comments. A
`log: true` rule is two kernel rules with one tag (LOG, then the verdict): only the
verdict rule counts, so each packet counts once. A rule of a set-compiled block has no
kernel rule of its own: its set elements carry its tag as their comment and count for it
(set_elements.py), with the same resets when elements go.

The kernel restarts a rule's counters from zero when the agent rewrites its chain, deletes
it or edits it away; the hits counted before are gone from the kernel. Right before each
restore the agent reads the counters of the rules it is about to replace and, once the
restore is in, records per uuid what the kernel lost (`lost`: those rules' counts) under a
new counter generation (`counters.json`, in the runtime directory: it outlives an agent
restart, not a reboot, like the counters themselves). The apply answer carries that
reset and the status lists the recent ones, so the console credits the hits it had not
polled yet: its baseline for the rule drops by `lost`, and the next reading's growth
includes them; a rule the new bundle no longer has is `gone`, its final count credited
at once. Only the packets counted between the read and the restore's commit (the
milliseconds the restore takes) are lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rampart_agent.bundle import Bundle
from rampart_agent.dataplane import LiveFamily, LiveRule, LiveTable
from rampart_agent.ruleset import Table, edit_span
from rampart_agent.state import COUNTERS_FILE, StateDir
from rampart_contract.naming import FAMILIES

KEEP_RESETS = 16  # resets the status lists: the console polls every minute
NOT_RULES = ("sys", "jump")  # tag kinds of kernel rules that are not a policy rule's

TAG_RE = re.compile(r"rpt:([^:\s\"']+):")

Counts = dict[str, list[int]]  # rule uuid -> [packets, bytes]


def tag_uuid(comment: str | None) -> str | None:
    """The policy rule a `rpt:<uuid>:<hash>` tag names (None: not a policy rule's)."""
    if not comment or not comment.startswith("rpt:"):
        return None
    parts = comment.split(":")
    if len(parts) < 3 or parts[1] in NOT_RULES:
        return None
    return parts[1]


def rule_uuid(rule: LiveRule) -> str | None:
    """The policy rule whose count this kernel rule holds (None: not counted)."""
    return None if rule.target == "LOG" else tag_uuid(rule.comment)


def add_counts(rules: Iterable[LiveRule], into: Counts) -> None:
    """Add the counters of `rules` to `into`, per rule uuid."""
    for rule in rules:
        uuid = rule_uuid(rule)
        if uuid is not None:
            c = into.setdefault(uuid, [0, 0])
            c[0] += rule.packets
            c[1] += rule.bytes


def losing_chains(
    old: Table | None, new: Table, *, inplace_limit: int
) -> dict[str, tuple[int, int] | None]:
    """The chains of `old` an incremental change to `new` takes counters from: chain ->
    the rules it keeps (first p, last s), None when it keeps none (rewritten or removed).
    Mirrors `plan_table`'s choice between an in-place edit and a rewrite."""
    out: dict[str, tuple[int, int] | None] = {}
    if old is None:
        return out
    for name, before in old.chains.items():
        after = new.chains.get(name)
        if after is not None and (before is after or before == after):
            continue
        span = None
        if after is not None and len(before) <= inplace_limit:
            span = edit_span(before, after)
        if span is None or span[0] + span[1] < len(before):
            out[name] = span
    return out


def lost_in_table(live: LiveTable | None, losing: dict[str, tuple[int, int] | None]) -> Counts:
    """The counts of the rules of `live` that the change removes (`losing_chains`)."""
    lost: Counts = {}
    if live is None:
        return lost
    for name, span in losing.items():
        rules = live.chains.get(name, [])
        if span is not None:
            p, s = span
            rules = rules[p : len(rules) - s]
        add_counts(rules, lost)
    return lost


def lost_in_family(live: LiveFamily) -> Counts:
    """A full rewrite flushes every RPT- chain: all their counts are lost."""
    lost: Counts = {}
    for table in live.values():
        for rules in table.chains.values():
            add_counts(rules, lost)
    return lost


def rule_uuids(bundle: Bundle) -> set[str]:
    """The rule uuids a bundle's rules are tagged with (one regex pass over each text): its
    kernel rules', and its set elements' (a rule of a set-compiled block is only there)."""
    texts = [bundle.raw.get(f"iptables_{family}") or "" for family in FAMILIES]
    texts.append(bundle.raw.get("ipsets") or "")
    return {uuid for text in texts for uuid in TAG_RE.findall(text) if uuid not in NOT_RULES}


def merge(into: Counts, more: Counts) -> None:
    for uuid, (p, b) in more.items():
        c = into.setdefault(uuid, [0, 0])
        c[0] += p
        c[1] += b


class CounterLedger:
    """The counter resets the agent caused, numbered by generation (`counters.json`)."""

    def __init__(self, state: StateDir, boot_id: str) -> None:
        self.state = state
        self.boot_id = boot_id

    def _read(self) -> dict[str, Any]:
        rec = self.state.read_json(COUNTERS_FILE) or {}
        if rec.get("boot_id") != self.boot_id:  # a reboot zeroed every counter anyway
            return {"boot_id": self.boot_id, "generation": 0, "resets": []}
        return rec

    def record(self, lost: Counts, at: float, holds: Bundle | None) -> dict[str, Any] | None:
        """Note a reset that took `lost` from the kernel; the reset (None: nothing lost).

        A rule that `holds` (the bundle the kernel now holds; None: unknown) no longer has
        is `gone`: its lost counts are its final count, which the console credits at once
        (no later reading of it will come)."""
        taken: dict[str, dict[str, Any]] = {
            u: {"packets": p, "bytes": b} for u, (p, b) in lost.items() if p or b
        }
        if not taken:
            return None
        if holds is not None:
            present = rule_uuids(holds)
            for uuid, entry in taken.items():
                if uuid not in present:
                    entry["gone"] = True
        rec = self._read()
        entry = {"generation": int(rec["generation"]) + 1, "at": at, "lost": taken}
        rec = {
            "boot_id": self.boot_id,
            "generation": entry["generation"],
            "resets": [*rec["resets"], entry][-KEEP_RESETS:],
        }
        self.state.write_json(COUNTERS_FILE, rec, durable=False)
        return {"boot_id": self.boot_id, **entry}

    def epoch(self) -> dict[str, Any]:
        """For the status: the generation the kernel's counters are at, recent resets."""
        return self._read()
