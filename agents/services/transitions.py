"""The state machine of a device deployment: the only way one changes state.

A device deployment moves queued → compiling → pushing → applied → confirmed, or ends
failed / rolled_back / superseded / unchanged / skipped; every move is appended to its
`transitions` with a timestamp, and audited. State changes are written with queryset
updates (no save signals), so each transition is audited once, with its meaning, not as a
field diff.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents.choices import TERMINAL_STATES, DeviceDeploymentState
from agents.models import DeviceDeployment
from agents.services.write_funnel import committed
from core.audit.choices import AuditAction
from core.audit.services import record

S = DeviceDeploymentState

_STAMPS = {
    S.COMPILING: "started_at",
    S.PUSHING: "pushed_at",
    S.APPLIED: "applied_at",
    S.CONFIRMED: "confirmed_at",
}


def now_iso() -> str:
    return timezone.now().isoformat()


def move(
    dd: DeviceDeployment, state: str, note: str = "", *, at: datetime | None = None, **fields: Any
) -> None:
    """Change state, stamp it, save, audit. The only way a device deployment changes state.

    `at`: when the step happened, if before now (a compile stamped before it ran). Several
    moves of one run go in one transaction with one chain append when the caller wraps
    them in `core.audit.services.deferred()` or `write_funnel.one_commit()`."""
    now = at or timezone.now()
    dd.state = state
    entry = {"state": state, "at": now.isoformat()}
    if note:
        entry["note"] = note[:500]
    dd.transitions = [*dd.transitions, entry]
    stamp = _STAMPS.get(state)
    if stamp:
        setattr(dd, stamp, now)
    if state in TERMINAL_STATES:
        dd.finished_at = now
    for key, value in fields.items():
        setattr(dd, key, value)
    dd.updated_at = timezone.now()
    values = {
        f.attname: getattr(dd, f.attname)
        for f in DeviceDeployment._meta.concrete_fields
        if not f.primary_key
    }
    extra = {
        "deployment": dd.deployment_id,
        "device": dd.device.name,
        "version": dd.version,
        "hash": dd.bundle_hash,
        **({"note": note[:200]} if note else {}),
        **({"error": dd.error[:500]} if state in (S.FAILED, S.ROLLED_BACK) else {}),
    }
    committed(_StateWrite(dd, values, (state, extra)))


class _StateWrite:
    """The state and its audit entry: they commit together; inside a caller's transaction
    (several moves of one run, a batch's group commit) no savepoint. Changes nothing in
    Python, so it can run again (agents/services/write_funnel.py). Two moves of one row
    in one commit (compiling and pushing) take one UPDATE, and keep their two entries."""

    def __init__(
        self, dd: DeviceDeployment, values: dict[str, Any], entry: tuple[str, dict]
    ) -> None:
        self.dd, self.values, self.entries = dd, values, [entry]

    def absorb(self, later: object) -> bool:
        if not isinstance(later, _StateWrite) or later.dd.pk != self.dd.pk:
            return False
        self.values = later.values  # every field, as of the later move
        self.entries += later.entries
        return True

    def __call__(self) -> None:
        with transaction.atomic(savepoint=False):
            DeviceDeployment.objects.filter(pk=self.dd.pk).update(**self.values)
            for state, extra in self.entries:
                record(AuditAction.DEPLOY_STATE, self.dd, after={"state": state}, extra=extra)
