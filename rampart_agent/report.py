"""GET /v1/status: what the kernel holds against the records (drift, counters), and
what the agent is doing; the engine's reporting half (engine.py holds the operations)."""

from __future__ import annotations

import threading
from typing import Any

from rampart_agent import __version__
from rampart_agent.counters import CounterLedger
from rampart_agent.dataplane import Dataplane
from rampart_agent.drift import drift_diff, drift_rules, read_kernel, text_drift
from rampart_agent.errors import AgentError
from rampart_agent.host import gather_facts
from rampart_agent.state import CONFIRMED_FILE, LAST_ROLLBACK_FILE, LIVE_FILE, StateDir
from rampart_agent.store import BundleStore

AGENT_VERSION = __version__


def _pending(live: dict[str, Any]) -> dict[str, Any] | None:
    if not live or live.get("confirmed"):
        return None
    return {k: live.get(k) for k in ("version", "hash", "deadline")}


class StatusReport:
    """The status read of `Engine` (which sets these attributes)."""

    _lock: threading.RLock
    dp: Dataplane
    state: StateDir
    store: BundleStore
    counters: CounterLedger
    boot_id: str
    other_backend_notice: dict[str, list[str]]
    needs_full: bool

    def _record(self, name: str) -> dict[str, Any] | None:
        return self.state.read_json(name)

    def _lock_for_status(self) -> bool:
        """Take the engine lock for a status read; False (not taken) as soon as the apply
        holding it waits for the xtables lock: the console is then told so at once."""
        while not self._lock.acquire(timeout=0.05):
            if self.dp.activity:
                return False
        return True

    def _busy_status(self) -> dict[str, Any]:
        """The status while an apply waits: from the records, no kernel read (which would
        wait too), no drift verdict (`drift` is null: unknown, not "no drift")."""
        live = self._record(LIVE_FILE) or {}
        return {
            "agent_version": AGENT_VERSION,
            "backend": self.dp.backend,
            "activity": self.dp.activity,
            "applied": {k: live.get(k) for k in ("hash", "version", "deployment", "confirmed")},
            "pending": _pending(live),
            "last_rollback": self._record(LAST_ROLLBACK_FILE),
            "drift": None,
            "counters": {},
            "boot_id": self.boot_id,
        }

    def status(self) -> dict[str, Any]:
        if not self._lock_for_status():
            return self._busy_status()
        try:
            live = self._record(LIVE_FILE)
            bundle = self.store.believed((live or {}).get("hash"))
        finally:
            self._lock.release()
        if bundle is None:
            raise AgentError(503, "the bundle just applied is still being stored; ask again")
        if not self._lock_for_status():
            return self._busy_status()
        try:
            view = read_kernel(self.dp, bundle)
            # read with the counters: the resets that explain them (counters.py)
            epoch = self.counters.epoch()
        finally:
            self._lock.release()
        keep = set(bundle.sets)
        if live and not live.get("confirmed"):
            keep |= set(self.store.load((self._record(CONFIRMED_FILE) or {}).get("hash")).sets)
        diff = drift_diff(view, bundle, keep)
        if not diff and live and live.get("hash"):
            diff = text_drift(self.state, live["hash"], view.texts)
        if diff:
            self.needs_full = True
        applied = None
        if live and live.get("hash"):
            applied = {
                k: live.get(k) for k in ("hash", "version", "deployment", "applied_at", "confirmed")
            }
        return {
            "agent_version": AGENT_VERSION,
            "backend": self.dp.backend,
            "applied": applied,
            "pending": _pending(live or {}),
            "last_rollback": self._record(LAST_ROLLBACK_FILE),
            "drift": {
                "drifted": bool(diff),
                "diff": diff,
                "rules": [r.as_dict() for r in drift_rules(view, diff.splitlines())]
                if diff
                else [],
            },
            "counters": view.counters,
            "counter_epoch": epoch,
            "facts": gather_facts(self.dp),
            "boot_id": self.boot_id,
            "other_backend_cleaned": self.other_backend_notice,
            "activity": self.dp.activity,
        }
