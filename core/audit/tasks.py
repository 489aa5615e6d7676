"""Beat tasks of the audit log (found by Celery's autodiscovery of each app's tasks.py)."""

from __future__ import annotations

from celery import shared_task

from .choices import VerifyTrigger
from .verification import run_verification, write_checkpoint

VERIFY_CHAIN = "core.audit.tasks.verify_chain"
WRITE_CHECKPOINT = "core.audit.tasks.write_chain_checkpoint"


# A million entries take over a minute to walk (bench/audit.py): a limit far above that.
@shared_task(name=VERIFY_CHAIN, acks_late=True, time_limit=3600, soft_time_limit=3500)
def verify_chain() -> dict:
    """Daily: check the whole chain, store the result, anchor it with a checkpoint if intact."""
    result, _ = run_verification(trigger=VerifyTrigger.SCHEDULE)
    return {"ok": result["ok"], "checked": result["checked"], "breaks": result["break_count"]}


@shared_task(name=WRITE_CHECKPOINT, acks_late=True, time_limit=600, soft_time_limit=570)
def write_chain_checkpoint() -> int | None:
    """Hourly: anchor the chain's head outside the database; the sequence anchored."""
    cp = write_checkpoint()
    return cp.seq if cp is not None else None
