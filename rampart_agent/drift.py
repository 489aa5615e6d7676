"""Drift and counters: what the kernel holds of ours, compared with the applied bundle.

Our rules are compared by their `rpt:` comments, chain by chain, with the jumps in the
built-in chains and the sets' sizes; a rule edited by hand that kept its comment is caught
by comparing the kernel's own rendering of our rules with the one recorded when they last
matched the bundle. A drift report names the foreign rules behind it by their kernel text
and where they run: inside our chains, or before or after our jump in a built-in chain
(a rule before the jump decides first, so Rampart's rules never see what it matches).
"""

from __future__ import annotations

import difflib
import logging
import threading
from dataclasses import dataclass, field

from rampart_agent.bundle import Bundle
from rampart_agent.counters import Counts, add_counts
from rampart_agent.dataplane import Dataplane, LiveFamily
from rampart_agent.dataplane.base import LiveSet
from rampart_agent.ruleset import LiveJump, _target, rule_comment
from rampart_agent.set_elements import add_set_counts, lookup_names, set_drift
from rampart_agent.state import StateDir
from rampart_agent.transition import KERNEL_ERRORS
from rampart_contract.naming import CHAIN_PREFIX, FAMILIES

SNAPSHOT_FILE = "snapshot.json"  # the kernel's rendering of our rules, for drift

log = logging.getLogger("rampart.agent")

# The bundle side of the drift comparison depends on the bundle alone: computed once per
# bundle (by its hash) instead of at every status read (a quarter of a 200-rule read).
_WANT: dict[tuple[str, str], tuple[str, ...]] = {}
_WANT_LOCK = threading.Lock()
WANT_MEMO_SIZE = 4096  # entries (family, bundle): a fleet process holds 1,000 agents


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
                    if rule.comment and _ours(rule.comment)
                    else _foreign_key(rule.target)
                )
                lines.append(f"{family} {tname} {name} {key}")
            add_counts(lt.chains[name], counters)
        for builtin, live_jumps in sorted(lt.jumps().items()):
            lines += [f"{family} {tname} {builtin} #{j.position} -> {j.target}" for j in live_jumps]
    return lines, counters


def want_lines(family: str, bundle: Bundle) -> tuple[str, ...]:
    """`family_lines` of the bundle side, memoized by the bundle's hash."""
    key = (family, bundle.hash)
    lines = _WANT.get(key)
    if lines is None:
        lines = tuple(family_lines(family, bundle, None)[0])
        with _WANT_LOCK:
            while len(_WANT) >= WANT_MEMO_SIZE:
                del _WANT[next(iter(_WANT))]
            _WANT[key] = lines
    return lines


def _ours(comment: str | None) -> bool:
    return bool(comment and comment.startswith("rpt:"))


def _foreign_key(target: str | None) -> str:
    """A rule without our tag is compared by its target only (the kernel may spell its
    matches differently from the bundle); the drift report adds its whole text."""
    return f"(no rpt comment) -j {target}"


def _rule_key(spec: str) -> str:
    comment = rule_comment(spec)
    return comment if comment and _ours(comment) else _foreign_key(_target("-A X " + spec))


@dataclass(frozen=True)
class ForeignRule:
    """A rule not from the bundle in a chain that holds (or should hold) ours."""

    family: str
    table: str
    chain: str
    position: int  # 1-based, in `chain`
    text: str  # the kernel's rendering, as `-A CHAIN <text>` would add it
    target: str | None
    where: str  # relative to Rampart's jump, in words

    def line(self) -> str:
        return (
            f"{self.family} {self.table} {self.chain} #{self.position}: "
            f"-A {self.chain} {self.text}  [{self.where}]"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "family": self.family,
            "table": self.table,
            "chain": self.chain,
            "position": self.position,
            "rule": f"-A {self.chain} {self.text}",
            "where": self.where,
        }


def _relation(position: int, jump: LiveJump | None) -> str:
    if jump is None:
        return "no jump to Rampart's rules here: they do not run"
    if position < jump.position:
        return f"before Rampart's jump to {jump.target} (#{jump.position}): runs first"
    return f"after Rampart's jump to {jump.target} (#{jump.position}): sees only what it returns"


def foreign_rules(family: str, bundle: Bundle, live: LiveFamily) -> list[ForeignRule]:
    """Foreign rules of the built-in chains that hold or should hold our jumps, each with its
    place relative to our jump, and the rules without our tag inside our chains (a bundle's
    own untagged rules among them: `drift_rules` keeps those the diff adds)."""
    out: list[ForeignRule] = []
    for tname, lt in sorted(live.items()):
        want = bundle.tables[family].get(tname)
        expected = set(want.jumps) if want else set()
        jumps = lt.jumps()
        for chain, rules in sorted(lt.builtins.items()):
            if chain not in jumps and chain not in expected:
                continue
            first = jumps[chain][0] if chain in jumps else None
            out += [
                ForeignRule(family, tname, chain, i, r.text, r.target, _relation(i, first))
                for i, r in enumerate(rules, 1)
                if not (r.target and r.target.startswith(CHAIN_PREFIX))
            ]
        for chain, rules in sorted(lt.chains.items()):
            out += [
                ForeignRule(family, tname, chain, i, r.text, r.target, "inside Rampart's chain")
                for i, r in enumerate(rules, 1)
                if not _ours(r.comment)
            ]
    return out


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
        if not all(sets.get(n) == bundle.set_entries.get(n) for n in bundle.sets):
            return False
        lookups = lookup_names(bundle.sets)  # same sizes; the same elements too?
        live = dp.read_sets(lookups) if lookups else {}
        return not any(set_drift(bundle.sets[n], live[n]) for n in lookups if n in live)
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
    foreign: list[ForeignRule] = field(default_factory=list)
    elements: dict[str, LiveSet] = field(default_factory=dict)  # lookup sets, read


def read_kernel(dp: Dataplane, bundle: Bundle) -> KernelView:
    """Read our chains, jumps and sets (the caller holds the apply lock)."""
    view = KernelView()
    for family in FAMILIES:
        view.want += want_lines(family, bundle)
        live_family = dp.read(family)
        got, cnt = family_lines(family, bundle, live_family)
        view.have += got
        view.foreign += foreign_rules(family, bundle, live_family)
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
    # set-compiled blocks: each element counts for the rule its comment names
    lookups = [n for n in lookup_names(bundle.sets) if n in view.sets]
    view.elements = dp.read_sets(lookups) if lookups else {}
    by_elements: Counts = {}
    add_set_counts(view.elements.values(), by_elements)
    for uuid, (p, b) in by_elements.items():
        c = view.counters.setdefault(uuid, {"packets": 0, "bytes": 0})
        c["packets"] += p
        c["bytes"] += b
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
    # equal sides: no diff (SequenceMatcher would take a fifth of the status read to say so)
    lines = (
        []
        if want == have
        else list(difflib.unified_diff(want, have, "applied", "live", lineterm=""))
    )
    elements = [
        line
        for name in lookup_names(bundle.sets)
        if name in view.elements
        for line in set_drift(bundle.sets[name], view.elements[name])
    ]
    if elements:  # an element added or removed by hand, named with its rule
        lines = (lines or ["--- applied", "+++ live"]) + ["# set elements:", *elements]
    behind = drift_rules(view, lines)
    if behind:
        lines += ["", "# kernel rules behind the drift:"] + [r.line() for r in behind]
    return "\n".join(lines)


def drift_rules(view: KernelView, diff: list[str]) -> list[ForeignRule]:
    """The foreign rules a drift diff is about: those it adds inside our chains, and those
    of the built-in chains whose jump lines changed (a rule inserted above our jump moves
    it)."""
    changed = [line[1:] for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    added = set(changed)
    jumps_changed = {line.split(" #", 1)[0] for line in changed if " -> " in line}
    return [
        r
        for r in view.foreign
        if f"{r.family} {r.table} {r.chain} {_foreign_key(r.target)}" in added
        or f"{r.family} {r.table} {r.chain}" in jumps_changed
    ]


def text_drift(state: StateDir, digest: str, texts: list[str]) -> str:
    """Rules edited by hand that kept their comment: compared with the kernel's own
    rendering of our rules, recorded the first time they matched the bundle."""
    snap = state.read_json(SNAPSHOT_FILE) or {}
    if snap.get("hash") != digest:
        state.write_json(SNAPSHOT_FILE, {"hash": digest, "rules": texts}, durable=False)
        return ""
    if snap["rules"] == texts:
        return ""
    return "\n".join(
        difflib.unified_diff(snap["rules"], texts, "applied (as loaded)", "live", lineterm="")
    )
