"""The kernel transition: make the kernel hold one bundle, assuming it holds another
(`journalled`: under the apply journal, repaired on failure).

On the native nftables dataplane (`dp.loads_script`) the whole change is one `nft -f`:
of the bundle's script, or of its set element changes alone when nothing else changed
(`_load_script`); everything below is the iptables path.

Order: sets that are missing are created (named by content, created empty, filled while
the rule payloads are parsed), then one `iptables-restore --noflush` per family (one
transaction per table), then sets nobody references any more are destroyed (the previous
bundle's sets are kept while a confirm is pending, for the rollback).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from typing import Any

from rampart_agent.bundle import Bundle
from rampart_agent.counters import (
    CounterLedger,
    Counts,
    losing_chains,
    lost_in_family,
    lost_in_table,
    merge,
)
from rampart_agent.dataplane import Dataplane, DataplaneError, LiveFamily, LiveTable
from rampart_agent.errors import AgentError
from rampart_agent.ruleset import (
    SetBlock,
    Table,
    believed_jumps,
    ipset_create_line,
    ipset_fill_payloads,
    ipset_refill_payload,
    plan_table,
)
from rampart_agent.runner import CommandError
from rampart_agent.set_elements import is_lookup, plan_elements
from rampart_agent.state import JOURNAL_FILE, StateDir
from rampart_contract.naming import FAMILIES

# What a kernel step can raise: the tool refused, failed to run, or timed out.
KERNEL_ERRORS = (DataplaneError, CommandError, OSError, subprocess.SubprocessError)
NO_NFT_SCRIPT = "has no nft script: the console compiles one for agents on the nft-native dataplane"

log = logging.getLogger("rampart.agent")


def journalled(
    dp: Dataplane,
    state: StateDir,
    old: Bundle,
    new: Bundle,
    *,
    full: bool,
    keep_sets: set[str],
    repair_to: Bundle,
    now: Callable[[], float],
    ledger: CounterLedger,
) -> dict[str, Any] | None:
    """`transition` under the apply journal. If the kernel refuses `new`, it is repaired
    to `repair_to` and AgentError says why; if even that fails, the journal stays for the
    next start to finish the repair. The caller removes the journal after success.

    Whatever the outcome, the counts the rewritten rules held go to `ledger`; returned:
    the counter reset (None: no rule lost a count).
    """
    lost: Counts = {}

    def journal() -> None:
        # Written while the restore tool parses, before anything reaches the kernel.
        # Not fsync'd: it guards against a killed agent; after a power loss the kernel
        # holds no rules and the start applies the (durable) confirmed bundle anyway.
        state.write_json(
            JOURNAL_FILE,
            {
                "phase": "applying",
                "from": old.hash,
                "to": new.hash,
                "repair_to": repair_to.hash,
                "started": now(),
            },
            durable=False,
        )

    try:
        transition(dp, old, new, full=full, keep_sets=keep_sets, before_kernel=journal, lost=lost)
    except KERNEL_ERRORS as exc:
        log.error("apply of %s failed: %s; restoring the previous policy", new.hash[:12], exc)
        try:
            transition(
                dp, new, repair_to, full=True, keep_sets=keep_sets, before_kernel=journal, lost=lost
            )
        except KERNEL_ERRORS as exc2:
            ledger.record(lost, now(), holds=None)  # the kernel holds a mix
            log.critical("repair failed too (journal kept for the next start): %s", exc2)
            raise AgentError(
                500, f"apply failed ({exc}) and repair failed ({exc2})", result="failed"
            ) from exc2
        state.remove(JOURNAL_FILE, durable=False)
        ledger.record(lost, now(), holds=repair_to)
        raise AgentError(422, f"kernel refused the bundle: {exc}", result="failed") from exc
    return ledger.record(lost, now(), holds=new)


def transition(
    dp: Dataplane,
    old: Bundle,
    new: Bundle,
    *,
    full: bool,
    keep_sets: set[str],
    before_kernel: Callable[[], None] = lambda: None,
    lost: Counts | None = None,
) -> None:
    """Make the kernel hold `new`, assuming it holds `old` (unless `full`).

    Incremental first, trusting the records; if the kernel refuses that (it did not
    hold what we believed), once more as a full rewrite that reads what is there.
    `before_kernel` runs once, right before the first change to the kernel (the
    journal). Raises DataplaneError with the kernel's words if a step fails; the
    caller repairs. `lost` (if given) gains the counts of the rules each family's restore
    replaced, read right before it (see counters.py).
    """
    once = _Once(before_kernel)
    if dp.loads_script:
        _load_script(dp, old, new, full=full, before_kernel=once, lost=lost)
        return
    if not full:
        try:
            _transition_once(
                dp, old, new, full=False, keep_sets=keep_sets, before_kernel=once, lost=lost
            )
            return
        except DataplaneError as exc:
            log.warning("incremental apply failed (%s); retrying as a full rewrite", exc)
    _transition_once(dp, old, new, full=True, keep_sets=keep_sets, before_kernel=once, lost=lost)


def _load_script(
    dp: Dataplane,
    old: Bundle,
    new: Bundle,
    *,
    full: bool,
    before_kernel: Callable[[], None],
    lost: Counts | None,
) -> None:
    """The native nftables path: a change of set elements alone is one element
    transaction (`update_elements`); anything else, one transaction replacing the whole
    table (old or new, never a mix), where every counter restarts, so all of them are read
    first (`lost`)."""
    if new.hash and new.nft is None:
        raise DataplaneError(f"bundle {new.hash[:12]}: {NO_NFT_SCRIPT}")
    if not full and old.nft and new.nft:
        taken: Counts = {}
        try:
            if dp.update_elements(old.nft, new.nft, before_kernel, taken):
                if lost is not None:
                    merge(lost, taken)
                return
        except DataplaneError as exc:  # the kernel did not hold `old`: reload the table
            log.warning("element update failed (%s); reloading the table", exc)
    taken = {}
    if lost is not None:
        for family in FAMILIES:
            merge(taken, lost_in_family(dp.read(family)))
        merge(taken, dp.element_counts())
    before_kernel()
    dp.load_script(new.nft)
    if lost is not None:
        merge(lost, taken)


def _transition_once(
    dp: Dataplane,
    old: Bundle,
    new: Bundle,
    *,
    full: bool,
    keep_sets: set[str],
    before_kernel: Callable[[], None],
    lost: Counts | None,
) -> None:
    existing, added, refills = _plan_sets(dp, old, new, full=full, keep_sets=keep_sets)
    # set-compiled blocks: element adds/deletes in sets that stay (set_elements.py)
    elements = plan_elements(dp, old.sets, new.sets, existing, full=full)
    refills += [ipset_refill_payload(block) for block in elements.refills]
    creates = [ipset_create_line(block) + "\n" for block in added]
    payloads = []
    for family in FAMILIES:
        taken: Counts | None = {} if lost is not None else None
        if text := plan_family(dp, family, old, new, full=full, lost=taken):
            payloads.append((family, text, taken))
    if creates or refills or elements.updates:
        before_kernel()
        # A set must exist when iptables-restore parses a rule naming it, so the new
        # sets are created (empty) first; they are filled while the rules are parsed.
        # Element changes go in the same batch: a one-rule change inside a block is
        # this batch alone, no table is written.
        dp.ipset_restore("".join(refills + creates) + elements.updates)
        if lost is not None:
            merge(lost, elements.lost)
    filling = [
        dp.begin_ipset_restore(fill)
        for fill in ipset_fill_payloads(added, min(os.cpu_count() or 1, 4))
    ]
    try:
        for family, text, taken in payloads:
            # The tool parses everything before the first COMMIT while the journal is
            # written and the sets are filled; nothing reaches the kernel before it.
            # One family at a time: a legacy restore holds the xtables lock from its
            # first table line to COMMIT, which the other family's would wait for.
            head, _, rest = text.partition("\nCOMMIT\n")
            pending = dp.begin_restore(family, head + "\n")
            try:
                before_kernel()
                while filling:  # every entry is in before a rule can use its set
                    filling.pop(0).commit("")
            except BaseException:
                pending.abort()
                raise
            pending.commit("COMMIT\n" + rest)
            if lost is not None and taken:  # only a restore that went in took them
                merge(lost, taken)
        while filling:
            filling.pop(0).commit("")
    except BaseException:
        for fill in filling:
            fill.abort()
        raise
    # What exists now: what existed (leftover temporary sets included) plus the new sets.
    stale = {n for n in existing if n not in new.sets and n not in keep_sets}
    if stale:
        left = dp.ipset_destroy(sorted(stale))
        if left:
            log.info("sets still referenced, kept: %s", ", ".join(left))


def _plan_sets(
    dp: Dataplane, old: Bundle, new: Bundle, *, full: bool, keep_sets: set[str]
) -> tuple[dict[str, int | None], list[SetBlock], list[str]]:
    """The sets that exist (name -> entries, None: unknown), the sets `new` adds (created
    empty, then filled) and the refill payloads of damaged sets (full rewrite only).

    Sets that exist: listed on a full rewrite; otherwise the ones the records say are
    there (the old bundle's and those kept for a rollback), like the chains. A set
    damaged by hand is drift: the status poll sees it, the next apply is full.
    """
    existing: dict[str, int | None]
    if full:
        existing = dict(dp.ipset_list())
    else:
        existing = {**{n: None for n in keep_sets}, **old.set_entries}
    added: list[SetBlock] = []
    refills: list[str] = []
    for name, block in new.sets.items():
        if name not in existing:
            added.append(block)
        elif full and existing[name] != block.entries and not is_lookup(block.create):
            refills.append(ipset_refill_payload(block))
    return existing, added, refills


def plan_family(
    dp: Dataplane, family: str, old: Bundle, new: Bundle, *, full: bool, lost: Counts | None = None
) -> str:
    """The restore payload turning `old` into `new` for one family ("": nothing);
    `lost` (if given) gains the counts of the rules it replaces, read from the kernel."""
    live: LiveFamily = dp.read(family) if full else {}
    if full and lost is not None:
        merge(lost, lost_in_family(live))
    names = set(new.tables[family]) | set(old.tables[family])
    if full:
        names |= {t for t, lt in live.items() if lt.chains or lt.jumps()}
    lines: list[str] = []
    for tname in sorted(names):
        old_t = old.tables[family].get(tname)
        new_t = new.tables[family].get(tname) or Table(tname)
        chains: set[str] | None
        if full:
            lt = live.get(tname)
            jumps = lt.jumps() if lt else {}
            chains = set(lt.chains) if lt else set()
        else:
            if old_t is not None and old_t == new_t:
                continue
            if lost is not None:
                losing = losing_chains(old_t, new_t, inplace_limit=dp.inplace_limit)
                if losing:  # a read only when rules lose their counters: those chains
                    held = dp.read_chains(family, tname, losing)
                    merge(lost, lost_in_table(LiveTable(chains=held), losing))
            if dp.reads_jumps_in_process:  # python-iptables: ~0.15 ms, no fork
                builtins = {b for b, js in new_t.jumps.items() if js}
                if old_t is not None:
                    builtins |= {b for b, js in old_t.jumps.items() if js}
                jumps = dp.read_jumps(family, tname, builtins) if builtins else {}
            else:
                # A read would cost a fork (iptables-nft -S: 1-11 ms, the whole apply
                # of 100 rules is ~5 ms): trust the record, as Felix trusts its cache.
                # A wrong belief makes the restore fail and the full rewrite below
                # read the kernel; jumps moved by others are drift for the status poll.
                jumps = believed_jumps(old_t)
            chains = None
        lines += plan_table(
            tname,
            old_t,
            new_t,
            jumps,
            full=full,
            live_chains=chains,
            inplace_limit=dp.inplace_limit,
        )
    return "\n".join(lines) + "\n" if lines else ""


class _Once:
    """Calls `fn` the first time it is called, never again."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()
