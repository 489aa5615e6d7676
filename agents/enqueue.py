"""Sending fleet work to Celery by task name: the seam between services and tasks.

A task is an interface that takes ids and calls one service, so tasks.py imports the
services; a service that must start work (a deployment's next wave) therefore cannot
import tasks.py without an import cycle. It sends the task by its registered name instead
(`current_app.send_task`), and tasks.py registers its tasks under the same constants, so
the import graph runs one way (tasks → services → this module) and a renamed task cannot
silently drift from its sender. Callers wrap the call in `transaction.on_commit` so a task
never sees uncommitted rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from celery import current_app
from django.conf import settings

DEPLOY_DEVICE = "agents.tasks.deploy_device"
DEPLOY_BATCH = "agents.tasks.deploy_batch"
POLL_DEVICE = "agents.tasks.poll_device"
POLL_FLEET = "agents.tasks.poll_fleet"
POLL_BATCH = "agents.tasks.poll_batch"
SWEEP_STUCK = "agents.tasks.sweep_stuck"
EXPIRE_RULES = "agents.tasks.expire_rules"


def device_deployments(ids: Iterable[int]) -> None:
    """Queue the device deployments: one `deploy_batch` task per `DEPLOY_BATCH` ids (a
    lone id as a `deploy_device` task): a 10,000-device wave is 400 messages, not 10,000."""
    ids = list(ids)
    size = max(1, settings.RAMPART.get("DEPLOY_BATCH", 25))
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        if len(chunk) == 1:
            current_app.send_task(DEPLOY_DEVICE, args=(chunk[0],))
        else:
            current_app.send_task(DEPLOY_BATCH, args=(chunk,))


def device_deployment_retry(dd_id: int, countdown: float) -> None:
    """Queue one device deployment of a batch again, on its own, after `countdown` s."""
    current_app.send_task(DEPLOY_DEVICE, args=(dd_id,), countdown=countdown)


def poll_batches(batches: Iterable[list[int]]) -> None:
    """Queue one `poll_batch` task per list of device ids."""
    for ids in batches:
        current_app.send_task(POLL_BATCH, args=(ids,))
