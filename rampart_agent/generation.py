"""Conditional status: `GET /v1/status?since=G` answers "unchanged" while nothing changed.

A console polling 10,000 agents wants each poll to cost one signed round trip and one row
update, not a full status (drift diff, counters, facts) parsed and written every time. The
agent keeps a *generation*: a number that changes whenever anything the full status reports
changes (applied bundle and version, pending state, last rollback, drift, counters, facts,
backend, activity). It is derived from a digest of the full status, so no code path that
changes state has to remember to bump it.

Drift and counters need a kernel read. That read is not done on every conditional poll:
the last full status is trusted for `recheck_seconds` as long as the agent's own records
(the live bundle record, the last rollback, the dataplane's activity) are unchanged, read
from the state directory at the cost of two small files. Past that window, the next poll
pays the kernel read, and still gets the small answer if the digest did not move. So drift
made by hand is seen within `recheck_seconds` plus one poll interval; an apply, confirm or
rollback is seen by the very next poll. A busy status (an apply waiting for the xtables lock)
is never cached and carries no generation: the console then forgets its generation.

The generation starts from the clock (microseconds) so an agent that restarts never reuses
a generation the console may still hold for a different status.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from rampart_contract.canonical import canonical_json

RECHECK_SECONDS = 30.0


class StatusGeneration:
    """One agent's generation and the digest of the full status it stands for."""

    def __init__(
        self,
        recheck_seconds: float = RECHECK_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recheck_seconds = recheck_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.generation = time.time_ns() // 1000
        self._digest = ""
        self._records = ""
        self._checked_at: float | None = None

    def fresh(self, since: int | None, records: str) -> int | None:
        """The generation if `since` is it and the last full status still stands, else None."""
        with self._lock:
            if (
                since is None
                or since != self.generation
                or self._checked_at is None
                or records != self._records
                or self._monotonic() - self._checked_at >= self.recheck_seconds
            ):
                return None
            return self.generation

    def observe(self, status: dict[str, Any], records: str) -> int:
        """Note a full status just read; the generation it belongs to (bumped if it moved)."""
        digest = hashlib.sha256(canonical_json(status)).hexdigest()
        with self._lock:
            if digest != self._digest:
                self._digest = digest
                self.generation += 1
            self._records = records
            self._checked_at = self._monotonic()
            return self.generation


def parse_since(query: str) -> int | None:
    """`since=<int>` from a status request's query string; None when absent.

    Raises ValueError on anything else (the server answers 400)."""
    if not query:
        return None
    since: int | None = None
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if name != "since" or not sep or not value.isascii() or not value.isdigit():
            raise ValueError(f"unknown or malformed query parameter {part[:40]!r}")
        since = int(value)
    return since


def conditional_status(
    gen: StatusGeneration,
    since: int | None,
    records: Callable[[], str],
    full_status: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """The answer to a status request: `{"unchanged": true, "generation": G}` when `since`
    is the current generation and the status is known not to have moved, else the full
    status with its `generation` (none while busy: `drift` is null then)."""
    key = records()  # read before the full status: a change in between shows next time
    cached = gen.fresh(since, key)
    if cached is not None:
        return {"unchanged": True, "generation": cached}
    status = full_status()
    if status.get("drift") is None:
        return status
    generation = gen.observe(status, key)
    if since == generation:
        return {"unchanged": True, "generation": generation}
    return {**status, "generation": generation}
