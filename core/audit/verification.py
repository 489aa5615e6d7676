"""Checking the chain against itself, its head row and the last checkpoint; writing
checkpoints.

`verify` walks every entry once (streamed, flat memory) and lists every break, not only
the first: an edited or re-sealed entry, a link that does not match its predecessor, a
run of deleted entries (a gap in `seq`), a plain entry after the keyed chain began, an
entry that no longer matches a checkpoint, and a tail shorter than the head row or the
last checkpoint (the newest entries deleted, the head row rewound).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .chain import ChainRow, seal_of
from .checkpoints import Checkpoint, last_checkpoint, publish, signed
from .choices import AuditChain, VerifyTrigger
from .keys import audit_key
from .models import GENESIS_HASH, AuditChainHead, AuditEntry, AuditVerification

log = logging.getLogger("rampart.audit")
MAX_LISTED_BREAKS = 10_000  # every break is counted; this many are listed (memory bound)
STORED_BREAKS = 100  # listed in the stored verification row
KEPT_VERIFICATIONS = 1000  # results kept (a monitor polling the API must not grow the table)


class _Walk:
    """The state of one pass over the chain; `add` records a break."""

    def __init__(self, key: bytes, checkpoint: Checkpoint | None, start_seq: int, prev: str):
        self.key, self.checkpoint = key, checkpoint
        self.expected, self.prev = start_seq, prev
        self.last_seq = start_seq - 1
        self.checked = 0  # entries walked
        self.intact = 0  # entries walked before the first break
        self.keyed_from: int | None = None
        self.breaks: list[dict[str, Any]] = []
        self.break_count = 0

    def add(self, kind: str, problem: str, seq: int | None = None, pk: int | None = None) -> None:
        if not self.break_count:
            self.intact = self.checked
        self.break_count += 1
        if len(self.breaks) < MAX_LISTED_BREAKS:
            self.breaks.append({"seq": seq, "id": pk, "kind": kind, "problem": problem})

    def step(self, row: ChainRow) -> None:
        if row.seq > self.expected:
            first, last = self.expected, row.seq - 1
            span = f"#{first}" if first == last else f"#{first}–#{last}"
            self.add("missing", f"entries {span} are missing before it: deleted", row.seq, row.pk)
        elif row.prev_hash != self.prev:
            self.add(
                "link",
                f"prev_hash does not match entry #{row.seq - 1}: an entry was inserted or replaced",
                row.seq,
                row.pk,
            )
        self._check_seal(row)
        cp = self.checkpoint
        if cp is not None and row.seq == cp.seq and row.hash != cp.head:
            self.add(
                "checkpoint",
                f"differs from the checkpoint of {cp.time:%Y-%m-%d %H:%M:%S} ({cp.source}): "
                "rewritten after it was anchored",
                row.seq,
                row.pk,
            )
        self.prev, self.expected, self.last_seq = row.hash, row.seq + 1, row.seq
        self.checked += 1

    def _check_seal(self, row: ChainRow) -> None:
        if row.chain == AuditChain.PLAIN and self.keyed_from is not None:
            self.add(
                "downgrade",
                f"a plain-hash entry after the keyed chain began at #{self.keyed_from}: rewritten",
                row.seq,
                row.pk,
            )
        elif seal_of(row, self.key) != row.hash:
            what = (
                "hash does not match the content: the entry was edited"
                if row.chain == AuditChain.PLAIN
                else "MAC does not match the content: edited or re-sealed without the audit key"
            )
            self.add("edited", what, row.seq, row.pk)
        if row.chain != AuditChain.PLAIN and self.keyed_from is None:
            self.keyed_from = row.seq

    def finish(self, before: AuditChainHead | None, after: AuditChainHead | None) -> None:
        """Compare the walked chain's end with the head row, read before and after the walk
        (entries appended meanwhile may or may not be seen), and with the checkpoint."""
        if before is None or after is None:
            if self.checked:
                self.add("head", "the chain head row is missing")
        elif before.seq > self.last_seq:
            self.add(
                "truncated",
                f"the chain ends at #{self.last_seq} but the head row records #{before.seq}: "
                "the newest entries were deleted",
                self.last_seq + 1,
            )
        elif after.seq < self.last_seq or (after.seq == self.last_seq and after.hash != self.prev):
            self.add(
                "head",
                f"the head row (#{after.seq}) does not match the chain's end (#{self.last_seq}): "
                "the head row was rewritten",
                after.seq,
            )
        self._against_checkpoint(after)

    def _against_checkpoint(self, head: AuditChainHead | None) -> None:
        cp = self.checkpoint
        if cp is None:
            return
        if cp.seq > self.last_seq:
            self.add(
                "truncated",
                f"the chain ends at #{self.last_seq} but the checkpoint of "
                f"{cp.time:%Y-%m-%d %H:%M:%S} ({cp.source}) records #{cp.seq}: "
                "the newest entries were deleted",
                self.last_seq + 1,
            )
        if head is not None and head.seq < cp.seq:
            self.add(
                "rewound",
                f"the head row records #{head.seq}, behind the checkpoint's #{cp.seq}: "
                "the head row was rewound",
                head.seq,
            )


def _rows(start_seq: int, chunk_size: int) -> Iterable[ChainRow]:
    qs = AuditEntry.objects.filter(seq__gte=start_seq).order_by("seq")
    for row in qs.values_list(*ChainRow.COLUMNS).iterator(chunk_size=chunk_size):
        yield ChainRow(row)


def verify(*, chunk_size: int = 5000) -> dict[str, Any]:
    """Walk the whole chain; report every break and how the chain compares with its head
    row and the last checkpoint. `ok` is true only when nothing is wrong."""
    key = audit_key()
    checkpoint, checkpoint_problems = last_checkpoint(key)
    walk = _Walk(key, checkpoint, 1, GENESIS_HASH)
    for problem in checkpoint_problems:
        walk.add("checkpoint", problem)
    before = AuditChainHead.objects.filter(pk=1).first()
    for row in _rows(1, chunk_size):
        walk.step(row)
    walk.finish(before, AuditChainHead.objects.filter(pk=1).first())
    first = walk.breaks[0] if walk.breaks else None
    return {
        "ok": walk.break_count == 0,
        # `checked`: entries found intact before the first break (all when ok), as before
        # every break was listed; `walked`: every entry examined.
        "checked": walk.intact if walk.break_count else walk.checked,
        "walked": walk.checked,
        "break_count": walk.break_count,
        "breaks": walk.breaks,
        "first_broken": first,
        "head_seq": walk.last_seq,
        "keyed_from": walk.keyed_from,
        "checkpoint": checkpoint.as_dict() if checkpoint else None,
    }


def run_verification(*, trigger: str = VerifyTrigger.COMMAND) -> tuple[dict, AuditVerification]:
    """`verify`, its result stored for the overview and /metrics; when the chain is intact
    a fresh checkpoint anchors it (never after a break: that would anchor the damage)."""
    started = time.monotonic()
    result = verify()
    cp = result["checkpoint"]
    row = AuditVerification.objects.create(
        time=timezone.now(),
        trigger=trigger,
        ok=result["ok"],
        checked=result["walked"],
        break_count=result["break_count"],
        breaks=result["breaks"][:STORED_BREAKS],
        head_seq=result["head_seq"],
        checkpoint_seq=cp["seq"] if cp else None,
        checkpoint_time=parse_datetime(cp["time"]) if cp else None,
        duration=time.monotonic() - started,
    )
    newest_first = AuditVerification.objects.order_by("-time", "-pk")
    stale = list(newest_first.values_list("pk", flat=True)[KEPT_VERIFICATIONS:])
    if stale:
        AuditVerification.objects.filter(pk__in=stale).delete()
    if result["ok"] and trigger != VerifyTrigger.API:
        write_checkpoint()
    elif not result["ok"]:
        log.error(
            "audit chain broken: %s breaks, first: %s",
            result["break_count"],
            result["first_broken"],
        )
    return result, row


def write_checkpoint(*, chunk_size: int = 5000) -> Checkpoint | None:
    """Anchor the current head: checks the entries since the last checkpoint first and
    refuses (logs, returns None) when they are broken. Returns the checkpoint written."""
    key = audit_key()
    previous, _ = last_checkpoint(key)
    with transaction.atomic():
        head = AuditChainHead.objects.filter(pk=1).first()
        if head is None:
            return None
        start, prev = (previous.seq + 1, previous.head) if previous else (1, GENESIS_HASH)
        walk = _Walk(key, None, start, prev)
        for row in _rows(start, chunk_size):
            if row.seq > head.seq:
                break
            walk.step(row)
        if previous is not None and head.seq < previous.seq:
            walk.add("rewound", f"the head row #{head.seq} is behind checkpoint #{previous.seq}")
        elif walk.last_seq != head.seq or (head.seq and walk.prev != head.hash):
            walk.add("head", f"the chain's end #{walk.last_seq} does not match head #{head.seq}")
    if walk.break_count:
        log.error(
            "audit checkpoint refused: %s breaks since checkpoint #%s; first: %s",
            walk.break_count,
            previous.seq if previous else 0,
            walk.breaks[0],
        )
        return None
    cp = signed(head.seq, head.hash, timezone.now(), key)
    publish(cp)
    return cp
