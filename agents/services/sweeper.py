"""The sweeper: every device deployment ends, with a reason, when its worker or message is lost.

A worker stamps `claimed_at`/`heartbeat_at` when it takes a device deployment's task (and
each state change stamps `updated_at`), and no run outlives the task's hard time limit T.
So, on each beat (docs/operations-faults.md has the bound and the settings):

- an in-flight device deployment (compiling, pushing, applied) with no sign of life for
  longer than T plus a grace is provably without a worker (killed with -9, out of memory,
  host gone): it is failed with that reason and its device's push lease is freed;
- a queued one of a running wave that no worker has taken for longer than the lost-message
  limit had its message lost (reserved by a killed worker, or a broker restarted without
  persistence): its task is sent again, at most DEPLOY_MAX_REQUEUES times; after that it is
  failed when no worker takes any work at all, and otherwise left to the backlog.

Sending again is idempotent: a terminal device deployment is left alone, the device's push
lease lets one run at a time, and the agent refuses a version twice (a repeated push is
recognised as the one it already holds).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents import enqueue
from agents.choices import ACTIVE_STATES, DeploymentStatus
from agents.models import DeviceDeployment
from agents.services.lease import lease_drop
from agents.services.rollout import deployment_refresh
from agents.services.transitions import S, move, now_iso


def grace_seconds() -> int:
    """Slack on top of a provable limit (a beat's lag, clocks of two hosts): a tenth of the
    time limit, between 5 and 30 seconds."""
    return min(30, max(5, settings.CELERY_TASK_TIME_LIMIT // 10))


def stuck_seconds() -> int:
    """Silence after which an in-flight device deployment has no worker any more: no run
    outlives the hard time limit, and a retry's next run starts within the backoff maximum."""
    backoff_max = settings.RAMPART.get("DEPLOY_RETRY_BACKOFF_MAX", 60)
    derived = max(settings.CELERY_TASK_TIME_LIMIT, backoff_max) + grace_seconds()
    return settings.RAMPART.get("DEPLOY_STUCK_SECONDS") or derived


def lost_seconds() -> int:
    """Wait in `queued`, never taken by a worker, after which its message counts as lost:
    half the time limit, and longer than a busy device's task waits between two tries."""
    backoff_max = settings.RAMPART.get("DEPLOY_RETRY_BACKOFF_MAX", 60)
    derived = max(settings.CELERY_TASK_TIME_LIMIT // 2, backoff_max + grace_seconds())
    return settings.RAMPART.get("DEPLOY_QUEUED_LOST_SECONDS") or derived


def sweep_stuck(*, now: datetime | None = None) -> int:
    """Fail lost in-flight runs, send lost queued tasks again; returns how many were acted on."""
    now = now or timezone.now()
    return _fail_stuck(now) + _requeue_lost(now)


def _silent_since(cut: datetime) -> Q:
    """No state change and no worker's claim after `cut`."""
    return Q(updated_at__lt=cut) & (Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=cut))


def _last_sign(dd: DeviceDeployment) -> datetime:
    return max(t for t in (dd.updated_at, dd.heartbeat_at) if t is not None)


def _fail_stuck(now: datetime) -> int:
    limit = stuck_seconds()
    stuck = DeviceDeployment.objects.filter(
        _silent_since(now - timedelta(seconds=limit)), state__in=ACTIVE_STATES
    ).select_related("device", "deployment")
    count = 0
    for dd in stuck.defer("deployment__document"):
        seconds = int((now - _last_sign(dd)).total_seconds())
        move(
            dd,
            S.FAILED,
            "sweeper",
            error=f"stuck in {dd.state} for {seconds}s (limit {limit}s): the worker was lost "
            "(killed, out of memory, host down) or its task ended without a word; an "
            "unconfirmed apply is rolled back by the agent itself",
        )
        lease_drop(dd)
        deployment_refresh(deployment_id=dd.deployment_id)
        count += 1
    return count


def _wave_started(dd: DeviceDeployment) -> datetime | None:
    """When the device deployment's wave was started (its task sent), if it was."""
    deployment = dd.deployment
    if dd.wave > deployment.current_wave or dd.wave >= len(deployment.waves):
        return None  # waiting for its wave: nothing was sent yet
    started = deployment.waves[dd.wave].get("started_at")
    return datetime.fromisoformat(started) if started else None


def _requeue_lost(now: datetime) -> int:
    limit = lost_seconds()
    cut = now - timedelta(seconds=limit)
    candidates = DeviceDeployment.objects.filter(
        _silent_since(cut),
        state=S.QUEUED,
        deployment__status__in=(DeploymentStatus.QUEUED, DeploymentStatus.RUNNING),
    ).select_related("device", "deployment")
    max_requeues = settings.RAMPART.get("DEPLOY_MAX_REQUEUES", 3)
    # any worker at work lately: a queued one not taken yet may only be behind a backlog
    consuming = DeviceDeployment.objects.filter(heartbeat_at__gte=cut).exists()
    count = 0
    for dd in candidates.defer("deployment__document"):
        started = _wave_started(dd)
        if started is None or started >= cut:
            continue
        seconds = int((now - max(_last_sign(dd), started)).total_seconds())
        if dd.requeues < max_requeues:
            _requeue(dd, now, f"no worker took it for {seconds}s: its message was lost")
        elif not consuming:
            move(
                dd,
                S.FAILED,
                "sweeper",
                error=f"queued for {seconds}s, sent again {dd.requeues} times, and no worker "
                f"took any work in {limit}s: no worker consumes the "
                f"{settings.CELERY_TASK_DEFAULT_QUEUE!r} queue",
            )
            deployment_refresh(deployment_id=dd.deployment_id)
        else:
            continue
        count += 1
    return count


def _requeue(dd: DeviceDeployment, now: datetime, why: str) -> None:
    """Send the device deployment's task again (after commit), noting why."""
    transitions = [
        *dd.transitions,
        {"state": dd.state, "at": now_iso(), "note": f"sent again: {why}"[:500]},
    ]
    DeviceDeployment.objects.filter(pk=dd.pk, state=S.QUEUED).update(
        requeues=dd.requeues + 1, transitions=transitions, updated_at=now
    )
    transaction.on_commit(lambda: enqueue.device_deployments([dd.pk]))
