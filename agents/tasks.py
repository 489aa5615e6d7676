"""Celery tasks: thin interfaces that take ids and call one service each (HackSoft).

Deploy tasks are acks_late (a worker that dies mid-push gets its message redelivered),
time-limited, and retried with exponential backoff and jitter only for errors worth
retrying (agent unreachable, device busy); validation errors end in `failed` at once.
Task names come from agents/enqueue.py, through which services send work here without
importing this module.
"""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from agents import enqueue, services

_TIME_LIMIT = settings.CELERY_TASK_TIME_LIMIT
_RETRY = {
    "autoretry_for": (services.RetryLater,),
    "retry_backoff": settings.RAMPART.get("DEPLOY_RETRY_BACKOFF", 2),
    "retry_backoff_max": settings.RAMPART.get("DEPLOY_RETRY_BACKOFF_MAX", 60),
    "retry_jitter": True,
    # The service counts push attempts itself (DEPLOY_MAX_ATTEMPTS) and records `failed` on
    # the last one; waiting for a busy device must not use up those attempts.
    "max_retries": None,
}


@shared_task(
    bind=True,
    name=enqueue.DEPLOY_DEVICE,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    **_RETRY,
)
def deploy_device(self, device_deployment_id: int) -> str:
    """Compile → push → confirm one device's part of a deployment."""
    try:
        return services.device_deployment_run(device_deployment_id=device_deployment_id)
    except SoftTimeLimitExceeded:
        services.device_deployment_fail(
            device_deployment_id=device_deployment_id, reason="task time limit exceeded"
        )
        return "failed"


@shared_task(
    name=enqueue.DEPLOY_BATCH,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
)
def deploy_batch(device_deployment_ids: list[int]) -> dict[int, str]:
    """Several devices' parts of a deployment, pushed concurrently (batch_run.py); a device
    to retry is sent again on its own as `deploy_device`."""
    return services.device_deployment_batch(device_deployment_ids=device_deployment_ids)


@shared_task(name=enqueue.POLL_DEVICE, acks_late=True, time_limit=60, soft_time_limit=50)
def poll_device(device_id: int) -> dict:
    """One agent's status: online/offline, drift (repaired where allowed), counters."""
    return services.status_poll(device_id=device_id)


@shared_task(name=enqueue.POLL_BATCH, acks_late=True, time_limit=300, soft_time_limit=280)
def poll_batch(device_ids: list[int]) -> int:
    """Several agents' status, one after the other (agents/services/poll_schedule.py)."""
    return len(services.status_poll_batch(device_ids=device_ids))


@shared_task(name=enqueue.POLL_FLEET, acks_late=True, time_limit=120, soft_time_limit=110)
def poll_fleet() -> dict:
    """Beat tick: send the devices due for a status poll, in batches (poll_schedule.py)."""
    return services.fleet_poll_tick()


@shared_task(name=enqueue.EXPIRE_RULES, acks_late=True, time_limit=60, soft_time_limit=50)
def expire_rules() -> int | None:
    """Beat: redeploy the devices a rule's expiry has made out of date; the deployment id."""
    deployment = services.expire_rules()
    return deployment.pk if deployment is not None else None


@shared_task(name=enqueue.SWEEP_STUCK, acks_late=True, time_limit=120, soft_time_limit=110)
def sweep_stuck() -> int:
    """Beat: fail in-flight runs whose worker was lost, send lost queued tasks again."""
    return services.sweep_stuck()
