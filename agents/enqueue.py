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

DEPLOY_DEVICE = "agents.tasks.deploy_device"
POLL_DEVICE = "agents.tasks.poll_device"
POLL_FLEET = "agents.tasks.poll_fleet"
POLL_BATCH = "agents.tasks.poll_batch"
SWEEP_STUCK = "agents.tasks.sweep_stuck"
EXPIRE_RULES = "agents.tasks.expire_rules"


def device_deployments(ids: Iterable[int]) -> None:
    """Queue one `deploy_device` task per device deployment id."""
    for dd_id in ids:
        current_app.send_task(DEPLOY_DEVICE, args=(dd_id,))


def poll_batches(batches: Iterable[list[int]]) -> None:
    """Queue one `poll_batch` task per list of device ids."""
    for ids in batches:
        current_app.send_task(POLL_BATCH, args=(ids,))
