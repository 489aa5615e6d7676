"""The audit log's hash chain check, run by the scrape at most once per interval.

`verify` walks the whole chain, far too long to run at every scrape of a large log. The
first scrape after the interval runs it (one process: the shared cache's `add` is the
lock) and keeps the result in the cache, where every worker's scrape reads it.
`RAMPART_METRICS_AUDIT_VERIFY_SECONDS` sets the interval (0: never checked by scrapes).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache

from core.audit.services import verify

RESULT_KEY = "rampart:metrics:audit-verify"
DUE_KEY = "rampart:metrics:audit-verify-due"


def audit_chain_state() -> dict[str, Any] | None:
    """{ok, checked, at, last_ok} of the last check (running one when it is due), or None
    when no check ran yet."""
    interval = int(getattr(settings, "RAMPART_METRICS_AUDIT_VERIFY_SECONDS", 900))
    if interval > 0 and cache.add(DUE_KEY, True, timeout=interval):
        refresh()
    return cache.get(RESULT_KEY)


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
