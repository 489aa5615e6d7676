"""Celery beat's DatabaseScheduler stores its schedule at every start: it must do so without
an error (a crontab's ZoneInfo once broke the audit snapshot of django_celery_beat rows)."""

from __future__ import annotations

import logging

import pytest
from celery.schedules import crontab
from django.conf import settings
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from console.celery import app
from core.audit.models import AuditEntry

# transaction=True: the scheduler closes and reopens the connection, as in beat
pytestmark = pytest.mark.django_db(transaction=True)


def test_beat_start_stores_the_schedule_without_an_error(caplog):
    caplog.set_level(logging.ERROR)
    DatabaseScheduler(app=app)  # what `celery beat --scheduler ...DatabaseScheduler` does first
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    # ours only: no result backend, so no daily `celery.backend_cleanup` crontab
    assert names == set(settings.CELERY_BEAT_SCHEDULE)


def test_a_crontab_entry_is_stored_and_audited_with_its_timezone(caplog):
    caplog.set_level(logging.ERROR)
    scheduler = DatabaseScheduler(app=app)
    scheduler.update_from_dict(
        {"nightly": {"task": "agents.tasks.sweep_stuck", "schedule": crontab(minute=0, hour=4)}}
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    task = PeriodicTask.objects.get(name="nightly")
    assert task.crontab is not None and task.crontab.hour == "4"
    entry = AuditEntry.objects.get(
        object_type="django_celery_beat.crontabschedule",
        object_id=str(CrontabSchedule.objects.get().pk),
    )
    assert entry.after["timezone"] == "UTC"
