"""The apply engine: one apply at a time, all or nothing, commit-confirmed, crash-safe.

State lives in the state directory and the runtime directory (see state.py); bundles are
stored once by hash (store.py) and the small records point at them:

- `confirmed.json`  the last confirmed bundle: what `restore` (boot) and rollbacks apply.
- `live.json`       (runtime) what the kernel holds (the confirmed bundle, or one awaiting
                    confirm); absent after a reboot, like the kernel's rules.
- `journal.json`    (runtime) written before the first kernel change, removed after the last: if it
                    exists at start, an apply was interrupted and the kernel may hold a mix,
                    so the agent repairs to the last confirmed bundle (full rewrite).

The kernel work itself is in transition.py, drift and counters in drift.py, the confirm
deadline's thread in background.py; this module holds the operations and their records.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rampart_agent.apply_request import parse_apply
from rampart_agent.background import Background
from rampart_agent.bundle import Bundle
from rampart_agent.counters import CounterLedger
from rampart_agent.dataplane import Dataplane, XtablesLockBusy
from rampart_agent.drift import kernel_matches
from rampart_agent.errors import AgentError
from rampart_agent.heal import heal_confirmed
from rampart_agent.host import boot_id, gather_facts, probe_label, run_probe
from rampart_agent.metrics import AgentMetrics, measured_apply
from rampart_agent.protocol import XTABLES_WAIT_SECONDS
from rampart_agent.report import AGENT_VERSION, StatusReport
from rampart_agent.ruleset import BundleError
from rampart_agent.runner import Clock
from rampart_agent.set_elements import rollback_sets
from rampart_agent.state import (
    CONFIRMED_FILE,
    JOURNAL_FILE,
    LAST_ROLLBACK_FILE,
    LIVE_FILE,
    StateDir,
)
from rampart_agent.store import BundleStore
from rampart_agent.transition import KERNEL_ERRORS, NO_NFT_SCRIPT, journalled

__all__ = ["AGENT_VERSION", "AgentError", "Bundle", "Engine", "gather_facts", "run_probe"]

NEEDS_FULL_FILE = "needs_full.json"

log = logging.getLogger("rampart.agent")

DEFAULT_CONFIRM_TIMEOUT = 30
ROLLBACK_RETRY = 5.0  # seconds before the background thread retries a failed rollback
STALE_CONNECTION = (
    "confirm must arrive on a connection opened after the apply; this one was opened before"
)


class Engine(StatusReport):
    """One agent's apply logic over a dataplane and a state directory."""

    def __init__(
        self,
        state: StateDir,
        dataplane: Dataplane,
        *,
        clock: Clock | None = None,
        probe_runner: Callable[[dict[str, Any]], bool] | None = None,
        default_confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT,
    ) -> None:
        self.state = state
        self.dp = dataplane
        self.clock = clock or Clock()
        self.default_confirm_timeout = default_confirm_timeout
        self.probe = probe_runner or run_probe
        self.metrics = AgentMetrics()  # served by `serve --metrics-listen` (metrics.py)
        self._lock = threading.RLock()
        self._background = Background(on_due=self.check_deadline, on_write=self._write_queued)
        self.boot_id = boot_id()
        self.counters = CounterLedger(state, self.boot_id)
        self.other_backend_notice: dict[str, list[str]] = {}
        self._other_checked = False
        # clock.monotonic() when the pending bundle reached the kernel: its confirm must come
        # on a connection opened later (one that passed the new rules to get here)
        self._applied_mono: float | None = None
        state.ensure()
        self.store = BundleStore(state, self._background.queue)
        heal_confirmed(state, self.clock.time())  # a missing bundle is logged, never fatal

    def _write_queued(self) -> None:
        """(background thread) Write the bundles `BundleStore.keep` queued, under the lock."""
        with self._exclusive():
            failed = self.store.write_queued(self._background.take_queued())
            self._background.requeue(failed)

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

    # --- records --------------------------------------------------------------------------
    def _versions(self, live: dict[str, Any], confirmed: dict[str, Any]) -> int:
        """Highest version seen: confirmed, live (pending) or rolled back."""
        rolled_back = self._record(LAST_ROLLBACK_FILE) or {}
        return max(int(r.get("version") or 0) for r in (confirmed, live, rolled_back))

    def _note_rollback(self, live: dict[str, Any], reason: str) -> None:
        self.metrics.rolled_back(reason)
        self.state.write_json(
            LAST_ROLLBACK_FILE,
            {
                "version": live.get("version"),
                "hash": live.get("hash"),
                "reason": reason,
                "at": self.clock.time(),
            },
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

    # --- the journalled transition --------------------------------------------------------
    def _do(
        self,
        old: Bundle,
        new: Bundle,
        new_record: dict[str, Any],
        *,
        full: bool,
        keep_sets: set[str],
        repair_to: Bundle,
    ) -> tuple[float, dict[str, Any] | None]:
        """Journal, transition, and on failure repair the kernel to `repair_to`: the
        seconds spent waiting for another program's xtables lock first, and the counter
        reset the change caused (counters.py; None: no rule lost a count)."""
        try:
            waited = self.dp.await_kernel_lock(XTABLES_WAIT_SECONDS)
        except XtablesLockBusy as exc:
            self.metrics.lock_waited(XTABLES_WAIT_SECONDS)
            raise AgentError(503, f"{exc}; nothing was changed", result="failed") from exc
        self.metrics.lock_waited(waited)

        reset = journalled(
            self.dp,
            self.state,
            old,
            new,
            full=full,
            keep_sets=keep_sets,
            repair_to=repair_to,
            now=self.clock.time,
            ledger=self.counters,
        )
        self.store.keep(new)
        self.metrics.loaded(new)
        self.state.write_json(LIVE_FILE, new_record, durable=False)
        self.state.remove(JOURNAL_FILE, durable=False)
        return waited, reset

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
        except KERNEL_ERRORS as exc:
            log.warning("could not check the other iptables backend: %s", exc)
        if self.other_backend_notice:
            log.warning(
                "rules of ours were found in the other iptables backend and were removed: %s",
                self.other_backend_notice,
            )

    # --- start (boot restore) -------------------------------------------------------------
    def start(self, serving: bool = True) -> dict[str, Any]:
        """Before serving: finish or undo an interrupted apply, re-apply the confirmed bundle.

        There is never a window with an empty firewall: whatever the kernel holds stays
        until the confirmed bundle replaces it in one transaction per table. `serving`:
        applies will follow, so the dataplane keeps its restore tools started and waiting
        (the one-shot `restore` command passes False).
        """
        if serving:
            self.dp.keep_tools_ready()
            self.store.serving = True
        self._background.ensure_started()  # started with the agent, not by its first apply
        with self._exclusive():
            confirmed = self._record(CONFIRMED_FILE)
            live = self._record(LIVE_FILE)
            journal = self._record(JOURNAL_FILE)
            if confirmed and confirmed.get("healed_from") and not confirmed.get("hash"):
                return self._keep_kernel(confirmed)
            target = self.store.load((confirmed or {}).get("hash"))
            reason = None
            believed: Bundle | None
            if journal:
                reason = "interrupted apply undone at start"
                believed = None
            elif live and not live.get("confirmed"):
                reason = "agent restarted before the confirm"
                believed = self.store.believed(live.get("hash"))
            else:
                believed = self.store.believed((live or {}).get("hash"))
            full = believed is None or not kernel_matches(self.dp, believed)
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
            # only now that this backend holds the confirmed policy: a backend switch never
            # leaves the host without one (both filter, with the same policy, meanwhile)
            self._check_other_backend()
            # applies trust the records; the start lists what is there and destroys the
            # sets a killed apply left behind (filled, or kept for a rollback)
            self._gc_after_confirm()
            return {
                "restored": target.hash,
                "version": record.get("version", 0),
                "full": full,
                "reason": reason,
            }

    def _keep_kernel(self, confirmed: dict[str, Any]) -> dict[str, Any]:
        """The confirmed bundle was lost and nothing could replace it (see heal.py): the
        kernel keeps what it holds, and the next apply rewrites every chain."""
        self.needs_full = True
        reason = f"confirmed bundle {confirmed['healed_from'][:12]} lost: kernel left as it is"
        log.error("%s; waiting for the console to push the policy again", reason)
        return {
            "restored": "",
            "version": confirmed.get("version", 0),
            "full": False,
            "reason": reason,
        }

    # --- apply, confirm, rollback ---------------------------------------------------------
    @measured_apply
    def apply(self, request: dict[str, Any], *, local: bool = False) -> dict[str, Any]:
        """POST /v1/apply (or the local break-glass `apply FILE`)."""
        bundle_raw, version, deployment, timeout, probes = parse_apply(request, local)
        # what the kernel holds, if at hand: a hint for parsing only (same text, same lines)
        held = self.store.cache.get((self._record(LIVE_FILE) or {}).get("hash", ""))
        try:
            bundle = Bundle.parse(bundle_raw, previous=held)
        except BundleError as exc:
            raise AgentError(400, f"invalid bundle: {exc}") from exc
        if self.dp.loads_script and bundle.nft is None:  # refused before the kernel is touched
            raise AgentError(400, f"bundle {bundle.hash[:12]} {NO_NFT_SCRIPT}", result="failed")
        started = time.monotonic()
        with self._exclusive():
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
            old = self.store.believed(live.get("hash"))
            base = self.store.load(confirmed.get("hash"))
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
                self.store.write_confirmed(dict(record, confirmed=True))
                self._check_other_backend()
                return {
                    "result": "unchanged",
                    "hash": bundle.hash,
                    "version": version,
                    "apply_ms": 0,
                    "confirm_deadline": None,
                }
            waited, reset = self._do(
                old,
                bundle,
                record,
                full=full,
                keep_sets=rollback_sets(base.sets),
                repair_to=repair_to,
            )
            self._applied_mono = self.clock.monotonic()
            self._check_other_backend()  # after the new policy is in: see start()
            if full:
                self.needs_full = False
            try:
                failed = next((probe_label(p) for p in probes if not self.probe(p)), None)
                if failed:
                    self._rollback_locked(f"probe failed: {failed}", to_record=confirmed)
                    raise AgentError(
                        422, f"probe failed: {failed}; rolled back", result="rolled_back"
                    )
                if timeout <= 0:
                    self.store.write_confirmed(dict(record, confirmed=True))
                    self._background.cancel()
                    self._gc_after_confirm(previous=base)
                else:
                    self._background.arm(timeout)
                    self.store.gc(keep={bundle.hash, confirmed.get("hash")})
            except AgentError:
                raise
            except Exception as exc:  # the new policy is in the kernel: never leave it so
                raise self._undo_after_kernel(exc, confirmed) from exc
        answer: dict[str, Any] = {
            "result": "applied",
            "hash": bundle.hash,
            "version": version,
            "apply_ms": round((time.monotonic() - started) * 1000, 1),
            "confirm_deadline": record["deadline"],
        }
        if reset:  # the counts of the rules this apply rewrote, for the console to keep
            answer["counter_reset"] = reset
        if waited > 0:
            answer["lock_wait_s"] = round(waited, 3)
            answer["note"] = f"waited {waited:.1f} s for the xtables lock"
        return answer

    def _undo_after_kernel(self, exc: Exception, confirmed: dict[str, Any]) -> AgentError:
        """An apply failed after its bundle reached the kernel: roll back at once; if even
        that fails, arm the deadline so the background thread tries again. Never a
        pending policy without a deadline. Returns the error to answer."""
        reason = f"apply failed after the kernel changed ({exc.__class__.__name__}: {exc})"
        log.error("%s; rolling back", reason)
        try:
            self._rollback_locked(reason, to_record=confirmed)
        except Exception as exc2:  # noqa: BLE001 - whatever broke, the deadline must stand
            log.critical("rollback failed too (%s): retried in %s s", exc2, ROLLBACK_RETRY)
            self._background.arm(ROLLBACK_RETRY)
            with contextlib.suppress(OSError):
                live = self._record(LIVE_FILE) or {}
                deadline = self.clock.time() + ROLLBACK_RETRY
                self.state.write_json(
                    LIVE_FILE, dict(live, confirmed=False, deadline=deadline), durable=False
                )
            return AgentError(500, f"{reason}; rollback failed ({exc2}), retried", result="failed")
        return AgentError(422, f"{reason}; rolled back", result="rolled_back")

    def confirm(self, version: int, opened_at: float | None = None) -> dict[str, Any]:
        """Confirm the pending `version`. `opened_at` (clock.monotonic() when the request's
        connection was accepted; None for the local CLI): a confirm on a connection opened
        before the apply proves nothing about the new rules (stateful rules let it through
        while they drop every new connection), so it is refused and the deadline stands."""
        with self._exclusive():
            live = self._record(LIVE_FILE) or {}
            if live.get("version") == version and not live.get("confirmed"):
                applied = self._applied_mono
                if opened_at is not None and applied is not None and opened_at <= applied:
                    raise AgentError(409, STALE_CONNECTION, result="stale_connection")
                record = dict(live, confirmed=True, deadline=None, confirmed_at=self.clock.time())
                self.store.write_confirmed(record)
                self.state.write_json(LIVE_FILE, record)
                self._background.cancel()
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

    def check_deadline(self) -> dict[str, Any] | None:
        """Roll back if the pending bundle's confirm deadline has passed."""
        with self._exclusive():
            live = self._record(LIVE_FILE) or {}
            deadline = live.get("deadline")
            if live.get("confirmed") or deadline is None:
                return None
            if self.clock.time() < deadline - 0.01:
                self._background.arm(max(deadline - self.clock.time(), 0.05))
                return None
            confirmed = self._record(CONFIRMED_FILE) or {}
            return self._rollback_locked(
                "no confirm from the console before the deadline", to_record=confirmed
            )

    def rollback(self, reason: str = "rollback requested") -> dict[str, Any]:
        with self._exclusive():
            confirmed = self._record(CONFIRMED_FILE) or {}
            return self._rollback_locked(reason, to_record=confirmed)

    def _rollback_locked(self, reason: str, to_record: dict[str, Any]) -> dict[str, Any]:
        live = self._record(LIVE_FILE) or {}
        old = self.store.believed(live.get("hash"))
        target = self.store.load(to_record.get("hash"))
        record = dict(
            to_record or {"hash": "", "version": 0},
            confirmed=True,
            boot_id=self.boot_id,
            deadline=None,
        )
        self._background.cancel()
        # the target's address sets were kept while the new bundle was pending: they are
        # there (its lookup sets were not: those the pending bundle dropped are re-created)
        self._do(
            old or Bundle.empty(),
            target,
            record,
            full=old is None,
            keep_sets=rollback_sets(target.sets),
            repair_to=target,
        )
        if live.get("hash") != target.hash or not live.get("confirmed"):
            self._note_rollback(live, reason)
        self.store.gc()
        log.warning("rolled back to version %s: %s", record.get("version"), reason)
        return {
            "result": "rolled_back",
            "hash": target.hash,
            "version": record.get("version"),
            "reason": reason,
        }

    def _gc_after_confirm(self, previous: Bundle | None = None) -> None:
        """Destroy the sets kept for a rollback (those of the previous confirmed bundle)."""
        bundle = self.store.load((self._record(LIVE_FILE) or {}).get("hash"))
        if previous is not None:  # right after an apply: only the kept sets can be stale
            stale = sorted(set(previous.sets) - set(bundle.sets))
        else:
            stale = [n for n in self.dp.ipset_list() if n not in bundle.sets]
        if stale:
            self.dp.ipset_destroy(stale)
        self.store.gc()

    def shutdown(self) -> None:
        self._background.stop()
        self._write_queued()  # what the thread had not written yet
        self.dp.keep_tools_ready(False)
