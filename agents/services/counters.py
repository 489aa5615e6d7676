"""Rule counters: the agents' raw kernel counters added up into totals that lose no hit.

A rule's kernel counters restart from zero whenever the agent rewrites the rule (a move, a
chain rewrite, a repair), and with the host. The agent says when its own rewrites did that
(rampart_agent/counters.py): each reset has a generation (numbered per boot) and the counts
the kernel lost per rule, in the apply answer and in the next statuses. Per rule the console
keeps a baseline (`last_raw_*`) and the last generation applied to it:

- a reset lowers the baseline by the lost counts (applied once: generation above the
  rule's), so the next reading's growth includes the hits not polled before the reset;
  a rule the reset removed for good (`gone`) is credited its final count at once;
- a reading adds its growth over the baseline, and becomes the baseline; a reading of an
  earlier generation than the rule's is stale (taken before a reset already applied);
- a new boot starts every baseline at zero; a reading below the baseline without a
  reported reset (counters zeroed by hand) is all new traffic: never negative, never zero.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction

from agents.models import RuleCounter
from agents.services.poll_writes import update_rows
from rules.models import Device

log = logging.getLogger("rampart.deploy")

Counts = dict[str, tuple[int, int]]  # rule uuid -> (packets, bytes)
_FIELDS = [
    "packets",
    "bytes",
    "last_hit_at",
    "last_raw_packets",
    "last_raw_bytes",
    "counter_boot",
    "counter_generation",
    "updated_at",
]


@dataclass
class Epoch:
    """What the agent said about its resets: its boot, the generation of the reading
    (None: no reading, an apply answer's reset only), the resets by generation."""

    boot: str = ""
    generation: int | None = None
    resets: list[tuple[int, Counts, set[str]]] = field(default_factory=list)  # +gone
    reported: bool = False  # False: an agent that does not report resets


def _counts(device: Device, raw: Any) -> Counts:
    """{uuid: {"packets", "bytes"}} from an agent, malformed entries logged and skipped."""
    out: Counts = {}
    for key, value in (raw or {}).items() if isinstance(raw, dict) else ():
        try:
            rule_uuid = str(uuid.UUID(str(key)))
            packets = int(value.get("packets") or 0)
            nbytes = int(value.get("bytes") or 0)
        except (ValueError, TypeError, AttributeError):
            log.warning("device %s: ignoring malformed counter %r", device.name, key)
            continue
        if packets >= 0 and nbytes >= 0:
            out[rule_uuid] = (packets, nbytes)
    return out


def _epoch(device: Device, raw: Any, generation: int | None) -> Epoch:
    if not isinstance(raw, dict):
        return Epoch()
    resets = []
    for entry in raw.get("resets") or ():
        try:
            lost = entry.get("lost") or {}
            gone = {str(k) for k, v in lost.items() if isinstance(v, dict) and v.get("gone")}
            resets.append((int(entry["generation"]), _counts(device, lost), gone))
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("device %s: ignoring malformed counter reset %r", device.name, entry)
    return Epoch(str(raw.get("boot_id") or ""), generation, sorted(resets), reported=True)


def _advance(
    c: RuleCounter,
    key: str,
    epoch: Epoch,
    reading: tuple[int, int] | None,
    reset: bool,
    at: datetime,
) -> None:
    """Move one rule's counter past the agent's resets and its new reading."""
    if epoch.reported and c.counter_boot != epoch.boot:
        if c.counter_boot or reset:  # a new boot: the kernel counted from zero
            c.last_raw_packets = c.last_raw_bytes = 0
            c.counter_generation = 0
        elif epoch.generation is not None:  # stored before resets were reported: its
            c.counter_generation = epoch.generation  # baseline stands, older resets too
        c.counter_boot = epoch.boot
    elif reset:
        c.last_raw_packets = c.last_raw_bytes = 0
    for generation, lost, gone in epoch.resets:
        if generation > c.counter_generation and key in lost:
            if key in gone:  # no longer deployed: its final count, credited now
                _read(c, lost[key], at)
                c.last_raw_packets = c.last_raw_bytes = 0
            else:  # the next reading's growth includes what it had not polled
                c.last_raw_packets -= lost[key][0]
                c.last_raw_bytes -= lost[key][1]
            c.counter_generation = generation
    if reading is None:
        return
    if epoch.generation is not None and epoch.generation < c.counter_generation:
        return  # read before a reset already applied: the next reading says more
    _read(c, reading, at)
    if epoch.generation is not None:
        c.counter_generation = epoch.generation


def _read(c: RuleCounter, reading: tuple[int, int], at: datetime) -> None:
    """Add a reading's growth over the baseline; it becomes the baseline."""
    packets, nbytes = reading
    if packets < c.last_raw_packets or nbytes < c.last_raw_bytes:  # zeroed unannounced
        grew_p, grew_b = packets, nbytes
    else:
        grew_p, grew_b = packets - c.last_raw_packets, nbytes - c.last_raw_bytes
    c.packets += grew_p
    c.bytes += grew_b
    if grew_p > 0:
        c.last_hit_at = at
    c.last_raw_packets, c.last_raw_bytes = packets, nbytes


def _state(c: Any) -> tuple:
    return tuple(getattr(c, f) for f in _FIELDS[:-1])


_LOADED = _FIELDS[:-1]  # `updated_at` is never moved here: not read, not written back


class _Stored:
    """A stored counter read as plain values: `_advance` moves it like a RuleCounter, and
    only the rows that changed are written (no ORM instance per rule per poll: ~0.1 ms each,
    most of a full poll of a 100-rule device)."""

    __slots__ = ("pk", *_LOADED)

    def __init__(self, pk: int, values: tuple) -> None:
        (
            self.packets,
            self.bytes,
            self.last_hit_at,
            self.last_raw_packets,
            self.last_raw_bytes,
            self.counter_boot,
            self.counter_generation,
        ) = values
        self.pk = pk


def _ingest(device: Device, readings: Counts, epoch: Epoch, at: datetime, reset: bool) -> int:
    keys = set(readings) | {k for _, lost, _ in epoch.resets for k in lost}
    if not keys:
        return 0
    new: list[RuleCounter] = []
    changed: dict[int, dict[str, Any]] = {}
    with transaction.atomic():
        # locked: a status poll and an apply answer of one device may be ingested at once
        existing = {
            str(row[1]): row
            for row in RuleCounter.objects.select_for_update()
            .filter(device=device)
            .values_list("pk", "rule_uuid", *_LOADED)
        }
        for key in keys:
            row = existing.get(key)
            if row is None:
                fresh = RuleCounter(device=device, rule_uuid=key, counter_boot=epoch.boot)
                _advance(fresh, key, epoch, readings.get(key), reset, at)
                new.append(fresh)
                continue
            counter = _Stored(row[0], row[2:])
            _advance(counter, key, epoch, readings.get(key), reset, at)  # type: ignore[arg-type]
            if _state(counter) != row[2:]:
                changed[counter.pk] = {f: getattr(counter, f) for f in _LOADED}
        RuleCounter.objects.bulk_create(new, ignore_conflicts=True)
        if changed:
            update_rows(RuleCounter, changed)
    return len(new) + len(changed)


def counters_ingest(
    *,
    device: Device,
    counters: dict,
    at: datetime,
    reset: bool = False,
    epoch: dict | None = None,
) -> int:
    """Add a status's raw per-rule counters to the stored totals (see the module doc).

    `epoch`: the status's `counter_epoch` (boot, generation, recent resets); `reset`: the
    host rebooted since the last poll (for agents that do not report their resets).
    Returns the number of counters written.
    """
    generation = epoch.get("generation") if isinstance(epoch, dict) else None
    parsed = _epoch(device, epoch, int(generation) if isinstance(generation, int) else 0)
    return _ingest(device, _counts(device, counters), parsed, at, reset)


def counter_reset_ingest(*, device: Device, reset: dict, at: datetime) -> int:
    """Apply an apply answer's `counter_reset` at once (the statuses repeat it)."""
    epoch = _epoch(device, {"boot_id": reset.get("boot_id"), "resets": [reset]}, None)
    return _ingest(device, {}, epoch, at, False)
