"""The apply engine: one apply at a time, all or nothing, commit-confirmed, crash-safe.

State lives in the state directory and the runtime directory (see state.py); bundles are
stored once by hash under `bundles/` (confirmed ones in the state directory, one awaiting
its confirm in the runtime directory) and the small records point at them:

- `confirmed.json`  the last confirmed bundle: what `restore` (boot) and rollbacks apply.
- `live.json`       (runtime) what the kernel holds (the confirmed bundle, or one awaiting
                    confirm); absent after a reboot, like the kernel's rules.
- `journal.json`    (runtime) written before the first kernel change, removed after the last: if it
                    exists at start, an apply was interrupted and the kernel may hold a mix,
                    so the agent repairs to the last confirmed bundle (full rewrite).

Order of an apply: sets that are missing are created (named by content, filled under a
temporary name and renamed), then one `iptables-restore --noflush` per family (one
transaction per table), then sets nobody references any more are destroyed (the previous
bundle's sets are kept while a confirm is pending, for the rollback).
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rampart_agent import protocol
from rampart_agent.dataplane import Dataplane, DataplaneError, LiveFamily
from rampart_agent.ruleset import (
    BundleError,
    SetBlock,
    Table,
    believed_jumps,
    ipset_create_line,
    ipset_fill_payloads,
    ipset_refill_payload,
    parse_ipsets,
    parse_restore,
    plan_table,
    rule_comment,
)
from rampart_agent.runner import Clock, CommandError
from rampart_agent.state import (
    CONFIRMED_FILE,
    JOURNAL_FILE,
    LAST_ROLLBACK_FILE,
    LIVE_FILE,
    StateDir,
    atomic_write,
    fsync_path,
)
from rampart_contract.naming import FAMILIES

NEEDS_FULL_FILE = "needs_full.json"
SNAPSHOT_FILE = "snapshot.json"  # the kernel's rendering of our rules, for drift
# What a kernel step can raise: the tool refused, failed to run, or timed out.
_KERNEL_ERRORS = (DataplaneError, CommandError, OSError, subprocess.SubprocessError)

log = logging.getLogger("rampart.agent")

AGENT_VERSION = "0.1.0"
DEFAULT_CONFIRM_TIMEOUT = 30


class AgentError(Exception):
    """A refused or failed operation; `status` is the HTTP code, `body` the JSON answer."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


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
        formats = (protocol.BUNDLE_FORMAT,) if verify_hash else (1, protocol.BUNDLE_FORMAT)
        if raw.get("format") not in formats:
            raise BundleError(
                f"unsupported bundle format {raw.get('format')!r} "
                f"(expected {protocol.BUNDLE_FORMAT})"
            )
        unknown = sorted(set(map(str, raw)) - protocol.BUNDLE_FIELDS)
        if unknown:
            raise BundleError(f"unknown bundle field {unknown[0]!r}")
        for key in ("device", "iptables_v4", "iptables_v6", "ipsets"):
            if not isinstance(raw.get(key, ""), str):
                raise BundleError(f"bundle field {key} must be a string")
        for key in ("chains", "sets"):
            if not isinstance(raw.get(key) or {}, dict):
                raise BundleError(f"bundle field {key} must be an object")
        digest = protocol.bundle_hash(raw) if verify_hash else str(raw.get("hash"))
        if verify_hash and raw.get("hash") != digest:
            raise BundleError("bundle hash does not match its content")
        sets = parse_ipsets(raw.get("ipsets", ""))
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
            tables={
                family: parse_restore(
                    raw.get(f"iptables_{family}", ""),
                    previous.tables.get(family) if previous else None,
                )
                for family in ("v4", "v6")
            },
            sets=sets,
            set_entries=entries,
        )

    @classmethod
    def empty(cls) -> Bundle:
        return cls(raw={}, hash="", tables={"v4": {}, "v6": {}}, sets={})

    def chain_count(self) -> int:
        return sum(len(t.chains) for fam in self.tables.values() for t in fam.values())


class Engine:
    """One agent's apply logic over a dataplane and a state directory."""

    def __init__(
        self,
        state: StateDir,
        dataplane: Dataplane,
        *,
        clock: Clock | None = None,
        probe_runner: Any = None,
        default_confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT,
    ) -> None:
        self.state = state
        self.dp = dataplane
        self.clock = clock or Clock()
        self.default_confirm_timeout = default_confirm_timeout
        self.probe = probe_runner or run_probe
        self._lock = threading.RLock()
        # one long-lived thread waits for the confirm deadline (a Timer per apply costs
        # ~0.1 ms to start, a sixth of the agent's own work on a 100-rule apply)
        self._deadline_cv = threading.Condition()
        self._fire_at: float | None = None  # time.monotonic() of the next deadline check
        self._watcher: threading.Thread | None = None
        self._stopped = False
        self._bundle_cache: dict[str, Bundle] = {}
        self._durable: set[str] = set()  # bundle files known to be fsync'd
        self._on_disk: set[str] = set()  # bundle files known to be there
        self._listed = False  # _on_disk holds every bundle file (the folders were listed)
        self._to_write: list[Bundle] = []  # for the watcher thread (see _store_bundle)
        self._serving = False  # set by start(serving=True): the background thread runs
        self.boot_id = _boot_id()
        self.other_backend_notice: dict[str, list[str]] = {}
        self._other_checked = False
        state.ensure()
        for pending in (False, True):
            state.bundle_file("x", pending).parent.mkdir(exist_ok=True)

    # --- bundle store -----------------------------------------------------------------
    def _store_bundle(self, bundle: Bundle) -> None:
        """Keep the bundle by hash, in memory at once, and on disk (runtime directory) for
        other processes (`status`, `confirm`, a restart) by the writer thread, once the
        apply under way has released the lock: its JSON (~3 ms for 10k rules) is not
        part of any apply. A restart before it is written loses nothing: the pending
        bundle is rolled back at start, by a full rewrite that reads the kernel.
        `_write_confirmed` makes it durable in the state directory."""
        self._bundle_cache[bundle.hash] = bundle
        if not bundle.hash or bundle.hash in self._on_disk:
            return
        if not self._serving:  # a one-shot command: it exits before any thread would write
            self._write_bundle_file(bundle, pending=True)
            return
        with self._deadline_cv:
            self._to_write.append(bundle)
            self._ensure_watcher()
            self._deadline_cv.notify()

    def _write_pending_files(self) -> None:
        """(watcher thread) Write the bundles `_store_bundle` queued, under the lock."""
        with self._exclusive():
            with self._deadline_cv:
                queued, self._to_write = self._to_write, []
            failed = []
            for bundle in queued:
                try:
                    self._write_bundle_file(bundle, pending=True)
                except OSError as exc:  # e.g. the runtime directory is full: try again later
                    log.error("could not store bundle %s: %s", bundle.hash[:12], exc)
                    failed.append(bundle)
            if failed:
                with self._deadline_cv:
                    self._to_write[:0] = failed

    def _write_bundle_file(self, bundle: Bundle, *, pending: bool) -> None:
        if bundle.hash in self._on_disk and (pending or bundle.hash in self._durable):
            return
        if pending:
            path = self.state.bundle_file(bundle.hash, pending=True)
            if not self.state.bundle_file(bundle.hash).exists() and not path.exists():
                atomic_write(path, _bundle_json(bundle.raw), durable=False)
        else:
            path = self.state.bundle_file(bundle.hash)
            pending_path = self.state.bundle_file(bundle.hash, pending=True)
            if path.exists():
                fsync_path(path)
                fsync_path(path.parent)
            else:
                data = (
                    pending_path.read_bytes() if pending_path.exists() else _bundle_json(bundle.raw)
                )
                atomic_write(path, data)  # fsync'd, folder too
            pending_path.unlink(missing_ok=True)
            self._durable.add(bundle.hash)
        self._on_disk.add(bundle.hash)

    def _write_confirmed(self, record: dict[str, Any]) -> None:
        """The durable record boot restores from: its bundle file is made durable first."""
        digest = record.get("hash")
        if digest and digest not in self._durable:
            self._write_bundle_file(self._load_bundle(digest), pending=False)
        self.state.write_json(CONFIRMED_FILE, record)

    def _believed(self, digest: str | None) -> Bundle | None:
        """The bundle a record says the kernel holds, or None when its file was never
        written (the agent died within milliseconds of applying it): the caller then
        rewrites everything after reading the kernel, as after a crash."""
        try:
            return self._load_bundle(digest)
        except FileNotFoundError:
            log.warning(
                "bundle %s is not stored: the next change rewrites every chain", (digest or "")[:12]
            )
            return None

    def _load_bundle(self, digest: str | None) -> Bundle:
        if not digest:
            return Bundle.empty()
        if digest in self._bundle_cache:
            return self._bundle_cache[digest]
        path = self.state.bundle_file(digest)
        if not path.exists():
            path = self.state.bundle_file(digest, pending=True)
        raw = json.loads(path.read_bytes())
        raw["hash"] = digest
        bundle = Bundle.parse(raw, verify_hash=False)
        self._on_disk.add(digest)
        cache = self._bundle_cache  # changed in place: other holders see the same dict
        cache[digest] = bundle
        for old in list(cache)[:-4]:
            del cache[old]
        return bundle

    def _gc_bundles(self, keep: set[str | None] | None = None) -> None:
        """Delete stored bundles nothing refers to; `keep` when the caller knows it."""
        if keep is None:
            keep = {
                (self.state.read_json(name) or {}).get("hash")
                for name in (CONFIRMED_FILE, LIVE_FILE)
            }
            journal = self.state.read_json(JOURNAL_FILE) or {}
            keep |= {journal.get("from"), journal.get("to")}
        self._bundle_cache = {k: v for k, v in self._bundle_cache.items() if k in keep}
        if self._listed and self._on_disk <= keep:
            return  # nothing to delete, and no directory listing needed to know it
        folders = [
            self.state.bundle_file("x").parent,
            self.state.bundle_file("x", pending=True).parent,
        ]
        left: set[str] = set()
        for folder in folders:
            for path in folder.glob("*.json"):
                if path.stem not in keep:
                    path.unlink(missing_ok=True)
                    if folder == folders[0]:
                        self._durable.discard(path.stem)
                else:
                    left.add(path.stem)
        # what is left; other processes (the local `apply` command) only add under the lock
        self._on_disk, self._listed = left, True

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One apply at a time: in this process (lock) and across processes (flock)."""
        with self._lock:
            fd = os.open(self.state.path / "apply.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                with self.dp.busy():
                    yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    # --- the kernel transition ----------------------------------------------------------
    def _transition(
        self,
        old: Bundle,
        new: Bundle,
        *,
        full: bool,
        keep_sets: set[str],
        before_kernel: Callable[[], None] = lambda: None,
    ) -> None:
        """Make the kernel hold `new`, assuming it holds `old` (unless `full`).

        Incremental first, trusting the records; if the kernel refuses that (it did not
        hold what we believed), once more as a full rewrite that reads what is there.
        `before_kernel` runs once, right before the first change to the kernel (the
        journal). Raises DataplaneError with the kernel's words if a step fails; the
        caller repairs.
        """
        once = _Once(before_kernel)
        if not full:
            try:
                self._transition_once(old, new, full=False, keep_sets=keep_sets, before_kernel=once)
                return
            except DataplaneError as exc:
                log.warning("incremental apply failed (%s); retrying as a full rewrite", exc)
        self._transition_once(old, new, full=True, keep_sets=keep_sets, before_kernel=once)

    def _transition_once(
        self,
        old: Bundle,
        new: Bundle,
        *,
        full: bool,
        keep_sets: set[str],
        before_kernel: Callable[[], None],
    ) -> None:
        # Sets that exist: listed on a full rewrite; otherwise the ones the records say are
        # there (the old bundle's and those kept for a rollback), like the chains. A set
        # damaged by hand is drift: the status poll sees it, the next apply is full.
        if full:
            existing = self.dp.ipset_list()
        else:
            existing = {**{n: None for n in keep_sets}, **old.set_entries}
        added: list[SetBlock] = []  # sets this bundle adds: created empty, then filled
        refills: list[str] = []  # damaged sets (full rewrite): refilled and swapped in
        for name, block in new.sets.items():
            if name not in existing:
                added.append(block)
            elif full and existing[name] != block.entries:
                refills.append(ipset_refill_payload(block))
        creates = [ipset_create_line(block) + "\n" for block in added]
        payloads = [
            (family, text)
            for family in FAMILIES
            if (text := self._plan_family(family, old, new, full=full))
        ]
        if creates or refills:
            before_kernel()
            # A set must exist when iptables-restore parses a rule naming it, so the new
            # sets are created (empty) first; they are filled while the rules are parsed.
            self.dp.ipset_restore("".join(refills + creates))
        filling = [
            self.dp.begin_ipset_restore(fill)
            for fill in ipset_fill_payloads(added, min(os.cpu_count() or 1, 4))
        ]
        try:
            for family, text in payloads:
                # The tool parses everything before the first COMMIT while the journal is
                # written and the sets are filled; nothing reaches the kernel before it.
                # One family at a time: a legacy restore holds the xtables lock from its
                # first table line to COMMIT, which the other family's would wait for.
                head, _, rest = text.partition("\nCOMMIT\n")
                pending = self.dp.begin_restore(family, head + "\n")
                try:
                    before_kernel()
                    while filling:  # every entry is in before a rule can use its set
                        filling.pop(0).commit("")
                except BaseException:
                    pending.abort()
                    raise
                pending.commit("COMMIT\n" + rest)
            while filling:
                filling.pop(0).commit("")
        except BaseException:
            for fill in filling:
                fill.abort()
            raise
        # What exists now: what existed (leftover temporary sets included) plus the new sets.
        stale = {n for n in existing if n not in new.sets and n not in keep_sets}
        if stale:
            left = self.dp.ipset_destroy(sorted(stale))
            if left:
                log.info("sets still referenced, kept: %s", ", ".join(left))

    def _plan_family(self, family: str, old: Bundle, new: Bundle, *, full: bool) -> str:
        """The restore payload turning `old` into `new` for one family ("": nothing)."""
        live: LiveFamily = self.dp.read(family) if full else {}
        names = set(new.tables[family]) | set(old.tables[family])
        if full:
            names |= {t for t, lt in live.items() if lt.chains or lt.jumps()}
        lines: list[str] = []
        for tname in sorted(names):
            old_t = old.tables[family].get(tname)
            new_t = new.tables[family].get(tname) or Table(tname)
            if full:
                lt = live.get(tname)
                jumps = lt.jumps() if lt else {}
                chains = set(lt.chains) if lt else set()
            else:
                if old_t is not None and old_t == new_t:
                    continue
                if self.dp.reads_jumps_in_process:  # python-iptables: ~0.15 ms, no fork
                    builtins = {b for b, js in new_t.jumps.items() if js}
                    if old_t is not None:
                        builtins |= {b for b, js in old_t.jumps.items() if js}
                    jumps = self.dp.read_jumps(family, tname, builtins) if builtins else {}
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
                inplace_limit=self.dp.inplace_limit,
            )
        return "\n".join(lines) + "\n" if lines else ""

    def _kernel_matches(self, bundle: Bundle) -> bool:
        """Cheap check at start: do our chains, their rule comments and jumps match?"""
        try:
            for family in FAMILIES:
                if (
                    self._family_lines(family, bundle, self.dp.read(family))[0]
                    != self._family_lines(family, bundle, None)[0]
                ):
                    return False
            sets = self.dp.ipset_list()
            return all(sets.get(n) == bundle.set_entries.get(n) for n in bundle.sets)
        except _KERNEL_ERRORS as exc:
            log.warning("could not read the kernel state: %s", exc)
            return False

    # --- records --------------------------------------------------------------------------
    def _record(self, name: str) -> dict[str, Any] | None:
        return self.state.read_json(name)

    def _versions(self, live: dict[str, Any], confirmed: dict[str, Any]) -> int:
        """Highest version seen: confirmed, live (pending) or rolled back."""
        rolled_back = self._record(LAST_ROLLBACK_FILE) or {}
        return max(int(r.get("version") or 0) for r in (confirmed, live, rolled_back))

    def _do(
        self,
        old: Bundle,
        new: Bundle,
        new_record: dict[str, Any],
        *,
        full: bool,
        keep_sets: set[str],
        repair_to: Bundle,
    ) -> None:
        """Journal, transition, and on failure repair the kernel to `repair_to`."""

        def journal() -> None:
            # Written while the restore tool parses, before anything reaches the kernel.
            # Not fsync'd: it guards against a killed agent; after a power loss the kernel
            # holds no rules and the start applies the (durable) confirmed bundle anyway.
            self.state.write_json(
                JOURNAL_FILE,
                {
                    "phase": "applying",
                    "from": old.hash,
                    "to": new.hash,
                    "repair_to": repair_to.hash,
                    "started": self.clock.time(),
                },
                durable=False,
            )

        try:
            self._transition(old, new, full=full, keep_sets=keep_sets, before_kernel=journal)
        except _KERNEL_ERRORS as exc:
            log.error("apply of %s failed: %s; restoring the previous policy", new.hash[:12], exc)
            try:
                self._transition(
                    new, repair_to, full=True, keep_sets=keep_sets, before_kernel=journal
                )
            except _KERNEL_ERRORS as exc2:
                log.critical("repair failed too (journal kept for the next start): %s", exc2)
                raise AgentError(
                    500, f"apply failed ({exc}) and repair failed ({exc2})", result="failed"
                ) from exc2
            self.state.remove(JOURNAL_FILE, durable=False)
            raise AgentError(422, f"kernel refused the bundle: {exc}", result="failed") from exc
        self._store_bundle(new)
        self.state.write_json(LIVE_FILE, new_record, durable=False)
        self.state.remove(JOURNAL_FILE, durable=False)

    def _check_other_backend(self) -> None:
        """Once per process: our chains in the other iptables backend are removed, loudly.

        Rules of ours left in legacy tables on an nft host (or the reverse) still filter
        packets but are invisible to this backend's tools: say so and clean them up.
        """
        if self._other_checked:
            return
        self._other_checked = True
        try:
            self.other_backend_notice = self.dp.cleanup_other_backend()
        except _KERNEL_ERRORS as exc:
            log.warning("could not check the other iptables backend: %s", exc)
        if self.other_backend_notice:
            log.warning(
                "rules of ours were found in the other iptables backend and were removed: %s",
                self.other_backend_notice,
            )

    @property
    def needs_full(self) -> bool:
        """Set when a status read found drift: the next apply rewrites every RPT- chain
        instead of editing in place on the belief that the kernel holds the last bundle."""
        return bool(self.state.read_json(NEEDS_FULL_FILE))

    @needs_full.setter
    def needs_full(self, value: bool) -> None:
        if value != self.needs_full:
            if value:
                self.state.write_json(NEEDS_FULL_FILE, True)
            else:
                self.state.remove(NEEDS_FULL_FILE)

    # --- public operations ----------------------------------------------------------------
    def start(self, serving: bool = True) -> dict[str, Any]:
        """Before serving: finish or undo an interrupted apply, re-apply the confirmed bundle.

        There is never a window with an empty firewall: whatever the kernel holds stays
        until the confirmed bundle replaces it in one transaction per table. `serving`:
        applies will follow, so the dataplane keeps its restore tools started and waiting
        (the one-shot `restore` command passes False).
        """
        if serving:
            self.dp.keep_tools_ready()
            self._serving = True
        with self._deadline_cv:
            self._ensure_watcher()  # started with the agent, not by its first apply
        with self._exclusive():
            self._check_other_backend()
            confirmed = self._record(CONFIRMED_FILE)
            live = self._record(LIVE_FILE)
            journal = self._record(JOURNAL_FILE)
            target = self._load_bundle((confirmed or {}).get("hash"))
            reason = None
            if journal:
                reason = "interrupted apply undone at start"
                believed = None
            elif live and not live.get("confirmed"):
                reason = "agent restarted before the confirm"
                believed = self._believed(live.get("hash"))
            else:
                believed = self._believed((live or {}).get("hash"))
            full = believed is None or not self._kernel_matches(believed)
            record = dict(
                confirmed or {"hash": "", "version": 0}, confirmed=True, boot_id=self.boot_id
            )
            self._do(
                believed or Bundle.empty(),
                target,
                record,
                full=full,
                keep_sets=set(),
                repair_to=target,
            )
            if reason:
                self._note_rollback(live or {}, reason)
            # applies trust the records; the start lists what is there and destroys the
            # sets a killed apply left behind (filled, or kept for a rollback)
            self._gc_after_confirm()
            return {
                "restored": target.hash,
                "version": record.get("version", 0),
                "full": full,
                "reason": reason,
            }

    def apply(self, request: dict[str, Any], *, local: bool = False) -> dict[str, Any]:
        """POST /v1/apply (or the local break-glass `apply FILE`)."""
        bundle_raw, version, deployment, timeout, probes = _parse_apply(request, local)
        # what the kernel holds, if at hand: a hint for parsing only (same text, same lines)
        held = self._bundle_cache.get((self._record(LIVE_FILE) or {}).get("hash", ""))
        try:
            bundle = Bundle.parse(bundle_raw, previous=held)
        except BundleError as exc:
            raise AgentError(400, f"invalid bundle: {exc}") from exc
        started = time.monotonic()
        with self._exclusive():
            self._check_other_backend()
            live = self._record(LIVE_FILE) or {}
            confirmed = self._record(CONFIRMED_FILE) or {}
            current = self._versions(live, confirmed)
            if version is None:
                version = current + 1
            elif version <= current:
                raise AgentError(
                    409,
                    f"version {version} is not greater than {current} "
                    "(replay or downgrade refused)",
                )
            if timeout is None:
                timeout = 0 if local else self.default_confirm_timeout
            old = self._believed(live.get("hash"))
            base = self._load_bundle(confirmed.get("hash"))
            now = self.clock.time()
            record = {
                "hash": bundle.hash,
                "version": version,
                "deployment": deployment,
                "applied_at": now,
                "confirmed": timeout <= 0,
                "boot_id": self.boot_id,
                "deadline": now + timeout if timeout > 0 else None,
            }
            full = self.needs_full or old is None
            # what the kernel holds if the new bundle fails: the last bundle, or, when that
            # one's file was lost, the confirmed one (never an empty firewall)
            repair_to = old if old is not None else base
            old = old or Bundle.empty()
            if bundle.hash == live.get("hash") and live.get("confirmed") and not full:
                record["applied_at"] = live.get("applied_at", now)
                self.state.write_json(LIVE_FILE, record)
                self._write_confirmed(dict(record, confirmed=True))
                return {
                    "result": "unchanged",
                    "hash": bundle.hash,
                    "version": version,
                    "apply_ms": 0,
                    "confirm_deadline": None,
                }
            self._do(old, bundle, record, full=full, keep_sets=set(base.sets), repair_to=repair_to)
            if full:
                self.needs_full = False
            failed = self._run_probes(probes)
            if failed:
                self._rollback_locked(f"probe failed: {failed}", to_record=confirmed)
                raise AgentError(422, f"probe failed: {failed}; rolled back", result="rolled_back")
            if timeout <= 0:
                self._write_confirmed(dict(record, confirmed=True))
                self._cancel_timer()
                self._gc_after_confirm(previous=base)
            else:
                self._arm_timer(timeout)
                self._gc_bundles(keep={bundle.hash, confirmed.get("hash")})
        return {
            "result": "applied",
            "hash": bundle.hash,
            "version": version,
            "apply_ms": round((time.monotonic() - started) * 1000, 1),
            "confirm_deadline": record["deadline"],
        }

    def confirm(self, version: int) -> dict[str, Any]:
        with self._exclusive():
            live = self._record(LIVE_FILE) or {}
            if live.get("version") == version and not live.get("confirmed"):
                record = dict(live, confirmed=True, deadline=None, confirmed_at=self.clock.time())
                self._write_confirmed(record)
                self.state.write_json(LIVE_FILE, record)
                self._cancel_timer()
                self._gc_after_confirm()
                return {"result": "confirmed", "version": version}
            last = self._record(LAST_ROLLBACK_FILE) or {}
            if last.get("version") == version:
                raise AgentError(
                    409,
                    f"version {version} was rolled back: {last.get('reason')}",
                    result="rolled_back",
                    reason=last.get("reason"),
                )
            if live.get("version") == version:
                return {"result": "confirmed", "version": version}
            if live.get("confirmed", True) and version > int(live.get("version") or 0):
                # newer than anything held and no rollback of it noted: its runtime records
                # went with a reboot while it was pending, and the start put the confirmed
                # bundle back
                reason = "host restarted before the confirm"
                raise AgentError(
                    409,
                    f"version {version} was rolled back: {reason}",
                    result="rolled_back",
                    reason=reason,
                )
            raise AgentError(409, f"version {version} is not pending", result="not_pending")

    def rollback(self, reason: str = "rollback requested") -> dict[str, Any]:
        with self._exclusive():
            confirmed = self._record(CONFIRMED_FILE) or {}
            return self._rollback_locked(reason, to_record=confirmed)

    def _rollback_locked(self, reason: str, to_record: dict[str, Any]) -> dict[str, Any]:
        live = self._record(LIVE_FILE) or {}
        old = self._believed(live.get("hash"))
        target = self._load_bundle(to_record.get("hash"))
        record = dict(
            to_record or {"hash": "", "version": 0},
            confirmed=True,
            boot_id=self.boot_id,
            deadline=None,
        )
        self._cancel_timer()
        # the target's sets were kept while the new bundle was pending: they are there
        self._do(
            old or Bundle.empty(),
            target,
            record,
            full=old is None,
            keep_sets=set(target.sets),
            repair_to=target,
        )
        if live.get("hash") != target.hash or not live.get("confirmed"):
            self._note_rollback(live, reason)
        self._gc_bundles()
        log.warning("rolled back to version %s: %s", record.get("version"), reason)
        return {
            "result": "rolled_back",
            "hash": target.hash,
            "version": record.get("version"),
            "reason": reason,
        }

    def _note_rollback(self, live: dict[str, Any], reason: str) -> None:
        self.state.write_json(
            LAST_ROLLBACK_FILE,
            {
                "version": live.get("version"),
                "hash": live.get("hash"),
                "reason": reason,
                "at": self.clock.time(),
            },
        )

    def _gc_after_confirm(self, previous: Bundle | None = None) -> None:
        """Destroy the sets kept for a rollback (those of the previous confirmed bundle)."""
        bundle = self._load_bundle((self._record(LIVE_FILE) or {}).get("hash"))
        if previous is not None:  # right after an apply: only the kept sets can be stale
            stale = sorted(set(previous.sets) - set(bundle.sets))
        else:
            stale = [n for n in self.dp.ipset_list() if n not in bundle.sets]
        if stale:
            self.dp.ipset_destroy(stale)
        self._gc_bundles()

    # --- commit-confirmed -------------------------------------------------------------------
    def _arm_timer(self, timeout: float) -> None:
        """Run `check_deadline` in `timeout` seconds (replacing any earlier arming)."""
        with self._deadline_cv:
            self._fire_at = time.monotonic() + timeout
            self._ensure_watcher()
            self._deadline_cv.notify()

    def _ensure_watcher(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch_deadline, daemon=True, name="confirm-deadline"
            )
            self._watcher.start()

    def _cancel_timer(self) -> None:
        with self._deadline_cv:
            self._fire_at = None

    def _watch_deadline(self) -> None:
        """The agent's one background thread: confirm deadlines, and bundle files."""
        while True:
            with self._deadline_cv:
                while (
                    not self._stopped
                    and not self._to_write
                    and (self._fire_at is None or self._fire_at > time.monotonic())
                ):
                    delay = None if self._fire_at is None else self._fire_at - time.monotonic()
                    self._deadline_cv.wait(delay)
                if self._stopped:
                    return
                write = bool(self._to_write)
                due = self._fire_at is not None and self._fire_at <= time.monotonic()
                if due:
                    self._fire_at = None
            try:
                if write:
                    self._write_pending_files()
                if due:
                    self.check_deadline()
            except Exception:  # noqa: BLE001 - the watcher must outlive a failed rollback
                log.exception("confirm deadline check or bundle write failed")

    def check_deadline(self) -> dict[str, Any] | None:
        """Roll back if the pending bundle's confirm deadline has passed."""
        with self._exclusive():
            live = self._record(LIVE_FILE) or {}
            deadline = live.get("deadline")
            if live.get("confirmed") or deadline is None:
                return None
            if self.clock.time() < deadline - 0.01:
                self._arm_timer(max(deadline - self.clock.time(), 0.05))
                return None
            confirmed = self._record(CONFIRMED_FILE) or {}
            return self._rollback_locked(
                "no confirm from the console before the deadline", to_record=confirmed
            )

    def _run_probes(self, probes: list[dict[str, Any]]) -> str | None:
        for probe in probes:
            if not self.probe(probe):
                return f"{probe.get('type')} {probe.get('host')}:{probe.get('port', '')}".rstrip(
                    ":"
                )
        return None

    def shutdown(self) -> None:
        with self._deadline_cv:
            self._fire_at = None
            self._stopped = True
            self._deadline_cv.notify()
        self._write_pending_files()  # what the thread had not written yet
        self.dp.keep_tools_ready(False)

    # --- reporting ------------------------------------------------------------------------
    def _family_lines(
        self, family: str, bundle: Bundle, live: LiveFamily | None
    ) -> tuple[list[str], dict[str, list[int]]]:
        """Comparable lines for drift (bundle side when `live` is None) and uuid counters."""
        lines: list[str] = []
        counters: dict[str, list[int]] = {}
        if live is None:
            for tname, table in sorted(bundle.tables[family].items()):
                for name, rules in table.chains.items():
                    lines.append(f"{family} {tname} :{name}")
                    lines += [
                        f"{family} {tname} {name} {_rule_key(r.split(None, 2)[2])}" for r in rules
                    ]
                for builtin, jumps in sorted(table.jumps.items()):
                    lines += [
                        f"{family} {tname} {builtin} #{i} -> {_target_of(j)}"
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
                    parts = (rule.comment or "").split(":")
                    if len(parts) >= 3 and parts[0] == "rpt" and parts[1] not in ("sys", "jump"):
                        c = counters.setdefault(parts[1], [0, 0])
                        c[0] += rule.packets
                        c[1] += rule.bytes
            for builtin, jumps in sorted(lt.jumps().items()):
                lines += [f"{family} {tname} {builtin} #{j.position} -> {j.target}" for j in jumps]
        return lines, counters

    def status(self) -> dict[str, Any]:
        with self._lock:
            live = self._record(LIVE_FILE)
            bundle = self._believed((live or {}).get("hash"))
        if bundle is None:
            raise AgentError(503, "the bundle just applied is still being stored; ask again")
        want: list[str] = []
        have: list[str] = []
        counters: dict[str, dict[str, int]] = {}
        texts: list[str] = []
        with self._lock:
            for family in FAMILIES:
                want += self._family_lines(family, bundle, None)[0]
                live_family = self.dp.read(family)
                got, cnt = self._family_lines(family, bundle, live_family)
                have += got
                texts += [
                    f"{family} {t} {name} {r.text}"
                    for t, lt in sorted(live_family.items())
                    for name, rules in lt.chains.items()
                    for r in rules
                ]
                for uuid, (p, b) in cnt.items():
                    c = counters.setdefault(uuid, {"packets": 0, "bytes": 0})
                    c["packets"] += p
                    c["bytes"] += b
            sets = self.dp.ipset_list()
        want += [f"set {n} entries={bundle.set_entries.get(n)}" for n in sorted(bundle.sets)]
        keep = set(bundle.sets)
        if live and not live.get("confirmed"):
            keep |= set(self._load_bundle((self._record(CONFIRMED_FILE) or {}).get("hash")).sets)
        have += [
            f"set {n} entries={sets[n]}"
            for n in sorted(sets)
            if n in bundle.sets or (n not in keep and not n.startswith("rpt-tmp-"))
        ]
        diff = "\n".join(difflib.unified_diff(want, have, "applied", "live", lineterm=""))
        if not diff and live and live.get("hash"):
            diff = self._text_drift(live["hash"], texts)
        if diff:
            self.needs_full = True
        applied = None
        if live and live.get("hash"):
            applied = {
                k: live.get(k) for k in ("hash", "version", "deployment", "applied_at", "confirmed")
            }
        pending = None
        if live and not live.get("confirmed"):
            pending = {
                "version": live.get("version"),
                "hash": live.get("hash"),
                "deadline": live.get("deadline"),
            }
        return {
            "agent_version": AGENT_VERSION,
            "backend": self.dp.backend,
            "applied": applied,
            "pending": pending,
            "last_rollback": self._record(LAST_ROLLBACK_FILE),
            "drift": {"drifted": bool(diff), "diff": diff},
            "counters": counters,
            "facts": gather_facts(self.dp),
            "boot_id": self.boot_id,
            "other_backend_cleaned": self.other_backend_notice,
        }

    def _text_drift(self, digest: str, texts: list[str]) -> str:
        """Rules edited by hand that kept their comment: compared with the kernel's own
        rendering of our rules, recorded the first time they matched the bundle."""
        snap = self.state.read_json(SNAPSHOT_FILE) or {}
        if snap.get("hash") != digest:
            self.state.write_json(SNAPSHOT_FILE, {"hash": digest, "rules": texts}, durable=False)
            return ""
        return "\n".join(
            difflib.unified_diff(snap["rules"], texts, "applied (as loaded)", "live", lineterm="")
        )


def _rule_key(spec: str) -> str:
    comment = rule_comment(spec)
    if comment and comment.startswith("rpt:"):
        return comment
    return f"(no rpt comment) -j {_target_of('-A X ' + spec)}"


def _target_of(line: str) -> str | None:
    from rampart_agent.ruleset import _target

    return _target(line)


def _parse_apply(request: Any, local: bool) -> tuple[dict, int | None, str, float | None, list]:
    """Validate an apply request; a bare bundle is accepted for the local break-glass."""
    if not isinstance(request, dict):
        raise AgentError(400, "body must be a JSON object")
    if local and "bundle" not in request and "format" in request:
        request = {"bundle": request}
    bundle = request.get("bundle")
    if not isinstance(bundle, dict):
        raise AgentError(400, "missing 'bundle' object")
    version = request.get("version")
    if version is None and not local:
        raise AgentError(400, "missing 'version'")
    if version is not None and (
        not isinstance(version, int) or isinstance(version, bool) or version < 1
    ):
        raise AgentError(400, "'version' must be a positive integer")
    deployment = request.get("deployment") or ""
    if not isinstance(deployment, str):
        raise AgentError(400, "'deployment' must be a string")
    timeout = request.get("confirm_timeout")
    if timeout is not None and (
        not isinstance(timeout, int | float) or timeout < 0 or timeout > 86400
    ):
        raise AgentError(400, "'confirm_timeout' must be 0..86400 seconds")
    probes = request.get("probes") or []
    if not isinstance(probes, list):
        raise AgentError(400, "'probes' must be a list")
    for p in probes:
        if (
            not isinstance(p, dict)
            or p.get("type") not in ("tcp", "icmp")
            or not isinstance(p.get("host"), str)
        ):
            raise AgentError(400, "each probe needs type tcp|icmp and a host")
        if p["type"] == "tcp" and not (isinstance(p.get("port"), int) and 0 < p["port"] < 65536):
            raise AgentError(400, "a tcp probe needs a port 1..65535")
    return bundle, version, deployment, timeout, probes


def run_probe(probe: dict[str, Any]) -> bool:
    """One health probe from this host: TCP connect or one ICMP echo."""
    timeout = float(probe.get("timeout") or 2)
    host = probe["host"]
    if probe["type"] == "tcp":
        try:
            with socket.create_connection((host, int(probe["port"])), timeout=timeout):
                return True
        except OSError:
            return False
    argv = ["ping", "-n", "-c", "1", "-W", str(max(1, round(timeout))), host]
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout + 2).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _bundle_json(raw: dict[str, Any]) -> bytes:
    """A bundle as stored: without the console's rule index, which the agent never uses."""
    return json.dumps(
        {k: v for k, v in raw.items() if k != "rules"}, separators=(",", ":"), ensure_ascii=False
    ).encode()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def gather_facts(dp: Dataplane) -> dict[str, Any]:
    """hostname, interfaces, kernel, iptables version and backend (sent at enrollment)."""
    try:
        interfaces = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        interfaces = []
    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "interfaces": interfaces,
        "kernel": os.uname().release,
    }
    try:
        facts.update(dp.facts())
    except (OSError, subprocess.SubprocessError) as exc:
        facts.update({"iptables_version": f"unknown ({exc})", "backend": dp.backend})
    return facts


class _Once:
    """Calls `fn` the first time it is called, never again."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()
