"""Services send tasks by name (agents/enqueue.py): every name sent or scheduled must be
the name a task in agents/tasks.py is registered under."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.conf import settings

from agents import enqueue, tasks
from console.celery import app


@pytest.mark.parametrize(
    "name,task",
    [
        (enqueue.DEPLOY_DEVICE, tasks.deploy_device),
        (enqueue.DEPLOY_BATCH, tasks.deploy_batch),
        (enqueue.POLL_DEVICE, tasks.poll_device),
        (enqueue.POLL_FLEET, tasks.poll_fleet),
        (enqueue.POLL_BATCH, tasks.poll_batch),
        (enqueue.SWEEP_STUCK, tasks.sweep_stuck),
        (enqueue.EXPIRE_RULES, tasks.expire_rules),
    ],
)
def test_each_name_is_the_registered_task(name, task):
    # shared_task hands out a proxy of the task the app registered
    assert task.name == name and app.tasks[name] is task._get_current_object()


def test_beat_schedules_registered_tasks():
    app.loader.import_default_modules()  # what a worker does at start: every app's tasks.py
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks


def test_device_deployments_are_sent_by_name_in_batches(monkeypatch):
    sent: list[tuple[str, tuple]] = []
    fake_app = SimpleNamespace(send_task=lambda name, args: sent.append((name, args)))
    monkeypatch.setattr(enqueue, "current_app", fake_app)
    enqueue.device_deployments([3, 5])
    enqueue.device_deployments([7])
    assert sent == [(enqueue.DEPLOY_BATCH, ([3, 5],)), (enqueue.DEPLOY_DEVICE, (7,))]


def test_poll_batches_are_sent_by_name_one_task_each(monkeypatch):
    sent: list[tuple[str, tuple]] = []
    fake_app = SimpleNamespace(send_task=lambda name, args: sent.append((name, args)))
    monkeypatch.setattr(enqueue, "current_app", fake_app)
    enqueue.poll_batches([[1, 2], [3]])
    assert sent == [(enqueue.POLL_BATCH, ([1, 2],)), (enqueue.POLL_BATCH, ([3],))]
