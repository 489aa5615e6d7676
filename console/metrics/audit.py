"""The audit log's hash chain check, started by a scrape at most once per interval.

`verify` re-hashes the whole chain (about 12,000 entries a second measured by
bench/audit.py: over a minute for a million), far longer than a scrape may take. So the
first scrape after the interval starts it on a thread of its own (one process does: the
shared cache's `add` is the lock) and every scrape, in any worker, exports the last
result kept in the cache. `RAMPART_METRICS_AUDIT_VERIFY_SECONDS` sets the interval (0:
scrapes never check).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections

from core.audit.services import verify

log = logging.getLogger("rampart.metrics")
RESULT_KEY = "rampart:metrics:audit-verify"
DUE_KEY = "rampart:metrics:audit-verify-due"


def _in_thread(check: Callable[[], object]) -> None:
    threading.Thread(target=check, name="audit-verify", daemon=True).start()


#: How a due check is started: on its own thread (tests run it inline).
start: Callable[[Callable[[], object]], None] = _in_thread


def audit_chain_state() -> dict[str, Any] | None:
    """{ok, checked, at, last_ok} of the last finished check, or None before the first;
    starts a check when one is due."""
    interval = int(getattr(settings, "RAMPART_METRICS_AUDIT_VERIFY_SECONDS", 3600))
    if interval > 0 and cache.add(DUE_KEY, True, timeout=interval):
        start(_check)
    return cache.get(RESULT_KEY)


def _check() -> None:
    try:
        refresh()
    except Exception:  # the next interval tries again; the last result stands meanwhile
        log.exception("metrics: the audit chain check failed")
    finally:
        if threading.current_thread() is not threading.main_thread():
            connections.close_all()  # this thread's own connections


def refresh() -> dict[str, Any]:
    """Check the chain now and keep the result (with the last time it was intact)."""
    result = verify()
    now = time.time()
    previous = cache.get(RESULT_KEY) or {}
    state = {
        "ok": bool(result["ok"]),
        "checked": int(result["checked"]),
        "at": now,
        "last_ok": now if result["ok"] else previous.get("last_ok"),
    }
    cache.set(RESULT_KEY, state, timeout=None)
    return state
