"""A confirmed record whose bundle file is gone: repaired at start, loudly, never fatal.

The record is what boot restores; if it names a missing file, refusing to start would
leave the host without Rampart rules after the next reboot and out of the console's reach.
So the record is pointed at the best bundle still at hand: the one the runtime records say
the kernel holds (when confirmed), else the newest bundle kept in the state directory.
With none left, the record keeps its version but names no bundle, and the kernel is left
as it is (never emptied) until the console pushes again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from rampart_agent.state import CONFIRMED_FILE, LIVE_FILE, StateDir, atomic_write

log = logging.getLogger("rampart.agent")


@dataclass(frozen=True)
class Healed:
    """What `heal_confirmed` did: the missing bundle, the one used instead ("" if none)."""

    lost: str
    used: str
    source: str


def _stored(state: StateDir, digest: str) -> bool:
    return any(state.bundle_file(digest, pending).exists() for pending in (False, True))


def _newest_confirmed_bundles(state: StateDir) -> list[str]:
    folder = state.bundle_file("x").parent
    try:
        paths = [p for p in folder.glob("*.json") if not p.name.startswith(".")]
        paths.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    except OSError:
        return []
    return [p.stem for p in paths]


def heal_confirmed(state: StateDir, now: float) -> Healed | None:
    """Repair `confirmed.json` if the bundle it names is not stored; None if it is."""
    confirmed: dict[str, Any] = state.read_json(CONFIRMED_FILE) or {}
    lost = confirmed.get("hash") or ""
    if not lost or state.bundle_file(lost).exists():
        return None
    if state.bundle_file(lost, pending=True).exists():  # would not outlive a reboot
        log.warning("confirmed bundle %s was only in the runtime directory: copied", lost[:12])
        atomic_write(state.bundle_file(lost), state.bundle_file(lost, pending=True).read_bytes())
        return None
    live: dict[str, Any] = state.read_json(LIVE_FILE) or {}
    candidates: list[tuple[str, str]] = []
    if live.get("confirmed") and live.get("hash"):
        candidates.append((live["hash"], "the bundle the kernel holds (runtime records)"))
    candidates += [
        (d, "the newest bundle kept in the state directory")
        for d in _newest_confirmed_bundles(state)
    ]
    used, source = "", "none left: the kernel is left as it is"
    for digest, why in candidates:
        if digest != lost and _stored(state, digest):
            used, source = digest, why
            break
    if used and not state.bundle_file(used).exists():
        # a bundle in the runtime directory would not survive a reboot
        atomic_write(state.bundle_file(used), state.bundle_file(used, pending=True).read_bytes())
    # the version stays: the console's next push must still be newer than anything seen
    state.write_json(CONFIRMED_FILE, dict(confirmed, hash=used, healed_from=lost, healed_at=now))
    log.error(
        "confirmed.json named bundle %s, which is not stored (removed by another process?); "
        "the confirmed record now names %s: %s. Push the policy again from the console.",
        lost[:12],
        used[:12] or "no bundle",
        source,
    )
    if not used and os.path.exists(state.file(LIVE_FILE)):
        state.remove(LIVE_FILE, durable=False)  # status reads the kernel as drifted
    return Healed(lost=lost, used=used, source=source)
