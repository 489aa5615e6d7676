"""A batch of device deployments in one task: several pushes on the wire at once.

One Celery message per device costs a broker round trip and a task start per device; a
batch (`DEPLOY_BATCH` device deployments, agents/enqueue.py) runs them on
`DEPLOY_BATCH_THREADS` threads of one task, each device exactly as `deploy_device` runs it
(`device_deployment_run`: its lease, its idempotency, its own states). What the batch adds:

- a device whose attempt should be repeated (agent unreachable, device busy) is sent again
  on its own as a `deploy_device` task after a backoff, which then retries as usual;
- a device whose run raised anything else is recorded `failed` with the error, and the
  others of the batch go on;
- on the task's soft time limit the devices not finished are recorded `failed` as the
  single task does (a hung agent).

A batch message redelivered after its worker died (acks_late) runs every device again:
finished ones are left alone, and the push lease and the agent's version check keep any
device from being applied twice.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Sequence

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from agents import enqueue
from agents.choices import TERMINAL_STATES
from agents.models import DeviceDeployment
from agents.services.device_run import RetryLater, device_deployment_fail, device_deployment_run
from agents.services.rollout import deployment_refresh
from agents.services.write_funnel import WriteFunnel

log = logging.getLogger(__name__)


def device_deployment_batch(
    *, device_deployment_ids: Sequence[int], threads: int | None = None
) -> dict[int, str]:
    """Run the device deployments, `threads` at a time; each id → the state it reached
    (`retrying` for one sent again on its own)."""
    ids = list(dict.fromkeys(device_deployment_ids))
    # the sweeper's sign of life for those still waiting their turn in this task
    DeviceDeployment.objects.filter(pk__in=ids).exclude(state__in=TERMINAL_STATES).update(
        heartbeat_at=timezone.now()
    )
    threads = max(1, min(threads or settings.RAMPART.get("DEPLOY_BATCH_THREADS", 8), len(ids)))
    results: dict[int, str] = {}
    if threads == 1:
        for dd_id in ids:
            results[dd_id] = _run_one(dd_id)
        return results
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for dd_id in ids:
        todo.put(dd_id)
    funnel = WriteFunnel()
    workers = [
        threading.Thread(target=_drain, args=(todo, results, funnel), name=f"deploy-batch-{i}")
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    try:
        # this thread commits the writes of the others, in groups (write_funnel.py)
        funnel.serve(lambda: not any(worker.is_alive() for worker in workers))
    except SoftTimeLimitExceeded:
        funnel.close()
        for dd_id in ids:
            if dd_id not in results:
                device_deployment_fail(
                    device_deployment_id=dd_id, reason="task time limit exceeded"
                )
                results[dd_id] = "failed"
    _refresh(ids)
    return results


def _refresh(ids: list[int]) -> None:
    """Move the rollouts of the batch's devices on, once each (a device run alone does it
    itself); a device sent again on its own moves it when it ends."""
    deployments = (
        DeviceDeployment.objects.filter(pk__in=ids)
        .order_by()  # no default ordering in the DISTINCT: one row per deployment
        .values_list("deployment_id", flat=True)
        .distinct()
    )
    for deployment_id in list(deployments):
        with transaction.atomic():  # its reads in one transaction
            deployment_refresh(deployment_id=deployment_id)


def _drain(todo: queue.SimpleQueue[int], results: dict[int, str], funnel: WriteFunnel) -> None:
    """One thread: device deployments from `todo` until none is left, their writes
    committed through `funnel`; its own database connection (for reads), closed at the end."""
    try:
        with funnel.active():
            while True:
                try:
                    dd_id = todo.get_nowait()
                except queue.Empty:
                    return
                results[dd_id] = _run_one(dd_id, refresh=False)
    finally:
        connections.close_all()  # this thread's connections only


def _run_one(dd_id: int, *, refresh: bool = True) -> str:
    try:
        return device_deployment_run(device_deployment_id=dd_id, refresh=refresh)
    except RetryLater:
        backoff = settings.RAMPART.get("DEPLOY_RETRY_BACKOFF", 2)
        enqueue.device_deployment_retry(dd_id, countdown=random.uniform(backoff / 2, backoff))
        return "retrying"
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # noqa: BLE001 - one device's crash must not stop the others
        log.exception("device deployment %s failed in a batch", dd_id)
        device_deployment_fail(device_deployment_id=dd_id, reason=f"{type(exc).__name__}: {exc}")
        return "failed"
