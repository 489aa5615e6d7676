"""The sweeper: fail device deployments whose worker was lost, saying why.

A deployment whose worker vanished for good (and whose message is gone) would otherwise
show `pushing` forever.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from agents.choices import ACTIVE_STATES
from agents.models import DeviceDeployment
from agents.services.lease import lease_drop
from agents.services.rollout import deployment_refresh
from agents.services.transitions import S, move


def sweep_stuck(*, now: datetime | None = None) -> int:
    """Fail device deployments stuck in flight beyond their time limit; returns how many."""
    now = now or timezone.now()
    limit = settings.RAMPART.get("DEPLOY_STUCK_SECONDS", settings.CELERY_TASK_TIME_LIMIT + 120)
    queued_limit = settings.RAMPART.get("DEPLOY_QUEUED_STUCK_SECONDS", 3600)
    stuck = list(
        DeviceDeployment.objects.filter(
            Q(state__in=ACTIVE_STATES, updated_at__lt=now - timedelta(seconds=limit))
            | Q(state=S.QUEUED, updated_at__lt=now - timedelta(seconds=queued_limit))
        ).select_related("device", "deployment")
    )
    count = 0
    for dd in stuck:
        if dd.state == S.QUEUED and dd.wave > dd.deployment.current_wave:
            continue  # waiting for its wave, not stuck
        seconds = int((now - dd.updated_at).total_seconds())
        move(
            dd,
            S.FAILED,
            "sweeper",
            error=f"stuck in {dd.state} for {seconds}s (limit {limit}s): "
            "the worker was lost or the task never ran",
        )
        lease_drop(dd)
        deployment_refresh(deployment_id=dd.deployment_id)
        count += 1
    return count
