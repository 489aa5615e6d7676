"""Drift and counters: what the kernel holds of ours, compared with the applied bundle.

Our rules are compared by their `rpt:` comments, chain by chain, with the jumps in the
built-in chains and the sets' sizes; a rule edited by hand that kept its comment is caught
by comparing the kernel's own rendering of our rules with the one recorded when they last
matched the bundle.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field

from rampart_agent.bundle import Bundle
from rampart_agent.counters import Counts, add_counts
from rampart_agent.dataplane import Dataplane, LiveFamily
from rampart_agent.ruleset import _target, rule_comment
from rampart_agent.state import StateDir
from rampart_agent.transition import KERNEL_ERRORS
from rampart_contract.naming import FAMILIES

SNAPSHOT_FILE = "snapshot.json"  # the kernel's rendering of our rules, for drift

log = logging.getLogger("rampart.agent")


def family_lines(family: str, bundle: Bundle, live: LiveFamily | None) -> tuple[list[str], Counts]:
    """Comparable lines for drift (bundle side when `live` is None) and uuid counters
    (summed as counters.py says: LOG rules are not counted)."""
    lines: list[str] = []
    counters: Counts = {}
    if live is None:
        for tname, table in sorted(bundle.tables[family].items()):
            for name, rules in table.chains.items():
                lines.append(f"{family} {tname} :{name}")
                lines += [
                    f"{family} {tname} {name} {_rule_key(r.split(None, 2)[2])}" for r in rules
                ]
            for builtin, jumps in sorted(table.jumps.items()):
                lines += [
                    f"{family} {tname} {builtin} #{i} -> {_target(j)}"
                    for i, j in enumerate(jumps, 1)
                ]
        return lines, counters
    for tname, lt in sorted(live.items()):
        want = bundle.tables[family].get(tname)
        order = list(want.chains) if want else []
        for name in order + sorted(n for n in lt.chains if n not in order):
            if name not in lt.chains:
                continue
            lines.append(f"{family} {tname} :{name}")
            for rule in lt.chains[name]:
                key = (
                    rule.comment
                    if rule.comment and rule.comment.startswith("rpt:")
                    else f"(no rpt comment) -j {rule.target}"
                )
                lines.append(f"{family} {tname} {name} {key}")
            add_counts(lt.chains[name], counters)
        for builtin, live_jumps in sorted(lt.jumps().items()):
            lines += [f"{family} {tname} {builtin} #{j.position} -> {j.target}" for j in live_jumps]
    return lines, counters


def _rule_key(spec: str) -> str:
    comment = rule_comment(spec)
    if comment and comment.startswith("rpt:"):
        return comment
    return f"(no rpt comment) -j {_target('-A X ' + spec)}"


def kernel_matches(dp: Dataplane, bundle: Bundle) -> bool:
    """Cheap check at start: do our chains, their rule comments and jumps match?"""
    try:
        for family in FAMILIES:
            if (
                family_lines(family, bundle, dp.read(family))[0]
                != family_lines(family, bundle, None)[0]
            ):
                return False
        sets = dp.ipset_list()
        return all(sets.get(n) == bundle.set_entries.get(n) for n in bundle.sets)
    except KERNEL_ERRORS as exc:
        log.warning("could not read the kernel state: %s", exc)
        return False


@dataclass
class KernelView:
    """One read of the kernel against a bundle: comparable lines, counters, rule texts."""

    want: list[str] = field(default_factory=list)
    have: list[str] = field(default_factory=list)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)  # our rules as the kernel renders them
    sets: dict[str, int] = field(default_factory=dict)


def read_kernel(dp: Dataplane, bundle: Bundle) -> KernelView:
    """Read our chains, jumps and sets (the caller holds the apply lock)."""
    view = KernelView()
    for family in FAMILIES:
        view.want += family_lines(family, bundle, None)[0]
        live_family = dp.read(family)
        got, cnt = family_lines(family, bundle, live_family)
        view.have += got
        view.texts += [
            f"{family} {t} {name} {r.text}"
            for t, lt in sorted(live_family.items())
            for name, rules in lt.chains.items()
            for r in rules
        ]
        for uuid, (p, b) in cnt.items():
            c = view.counters.setdefault(uuid, {"packets": 0, "bytes": 0})
            c["packets"] += p
            c["bytes"] += b
    view.sets = dp.ipset_list()
    return view


def drift_diff(view: KernelView, bundle: Bundle, keep: set[str]) -> str:
    """Unified diff of the bundle against the kernel ("": no drift). `keep`: sets kept on
    purpose (a rollback's), not reported as extra."""
    want = view.want + [f"set {n} entries={bundle.set_entries.get(n)}" for n in sorted(bundle.sets)]
    sets = view.sets
    have = view.have + [
        f"set {n} entries={sets[n]}"
        for n in sorted(sets)
        if n in bundle.sets or (n not in keep and not n.startswith("rpt-tmp-"))
    ]
    return "\n".join(difflib.unified_diff(want, have, "applied", "live", lineterm=""))


def text_drift(state: StateDir, digest: str, texts: list[str]) -> str:
    """Rules edited by hand that kept their comment: compared with the kernel's own
    rendering of our rules, recorded the first time they matched the bundle."""
    snap = state.read_json(SNAPSHOT_FILE) or {}
    if snap.get("hash") != digest:
        state.write_json(SNAPSHOT_FILE, {"hash": digest, "rules": texts}, durable=False)
        return ""
    return "\n".join(
        difflib.unified_diff(snap["rules"], texts, "applied (as loaded)", "live", lineterm="")
    )
