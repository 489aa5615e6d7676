"""The agent's one background thread: the commit-confirm deadline and the bundle writes.

One long-lived thread waits for the confirm deadline (a Timer per apply costs ~0.1 ms to
start, a sixth of the agent's own work on a 100-rule apply) and writes the bundle files
an apply queued, once that apply has released the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from rampart_agent.bundle import Bundle

log = logging.getLogger("rampart.agent")


class Background:
    """Calls `on_due` when an armed deadline passes and `on_write` when bundles are queued
    (it takes them with `take_queued`); both run on the thread, never under its lock."""

    def __init__(self, on_due: Callable[[], object], on_write: Callable[[], None]) -> None:
        self._on_due = on_due
        self._on_write = on_write
        self._cv = threading.Condition()
        self._fire_at: float | None = None  # time.monotonic() of the next deadline check
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._to_write: list[Bundle] = []

    def ensure_started(self) -> None:
        with self._cv:
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="confirm-deadline")
            self._thread.start()

    def arm(self, timeout: float) -> None:
        """Call `on_due` in `timeout` seconds (replacing any earlier arming)."""
        with self._cv:
            self._fire_at = time.monotonic() + timeout
            self._ensure_thread()
            self._cv.notify()

    def cancel(self) -> None:
        with self._cv:
            self._fire_at = None

    def queue(self, bundle: Bundle) -> None:
        """Have the thread write this bundle's file (see BundleStore.keep)."""
        with self._cv:
            self._to_write.append(bundle)
            self._ensure_thread()
            self._cv.notify()

    def take_queued(self) -> list[Bundle]:
        with self._cv:
            queued, self._to_write = self._to_write, []
            return queued

    def requeue(self, failed: list[Bundle]) -> None:
        """Bundles that could not be written go first on the next round."""
        if failed:
            with self._cv:
                self._to_write[:0] = failed

    def stop(self) -> None:
        """End the thread; what it had not written yet stays queued for the caller."""
        with self._cv:
            self._fire_at = None
            self._stopped = True
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while (
                    not self._stopped
                    and not self._to_write
                    and (self._fire_at is None or self._fire_at > time.monotonic())
                ):
                    delay = None if self._fire_at is None else self._fire_at - time.monotonic()
                    self._cv.wait(delay)
                if self._stopped:
                    return
                write = bool(self._to_write)
                due = self._fire_at is not None and self._fire_at <= time.monotonic()
                if due:
                    self._fire_at = None
            try:
                if write:
                    self._on_write()
                if due:
                    self._on_due()
            except Exception:  # noqa: BLE001 - the thread must outlive a failed rollback
                log.exception("confirm deadline check or bundle write failed")
