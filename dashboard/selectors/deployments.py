"""Deployments as the deployment pages and the overview show them."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from agents.models import Deployment
from agents.selectors import deployment_summary

DEPLOYMENT_ACTIVE = ("queued", "running")
DEPLOYMENT_BAD = ("failed", "halted")


def deployment_counts(*, since_days: int = 7) -> dict[str, int]:
    since = timezone.now() - timedelta(days=since_days)
    return {
        "running": Deployment.objects.filter(status__in=DEPLOYMENT_ACTIVE).count(),
        "failed": Deployment.objects.filter(
            status__in=DEPLOYMENT_BAD, created_at__gte=since
        ).count(),
        "since_days": since_days,
    }


def deployment_list(status: str = "") -> QuerySet:
    qs = (
        Deployment.objects.select_related("created_by")
        .annotate(
            device_total=Count("device_deployments"),
            device_ok=Count(
                "device_deployments",
                filter=Q(device_deployments__state__in=["confirmed", "unchanged"]),
            ),
            device_bad=Count(
                "device_deployments",
                filter=Q(device_deployments__state__in=["failed", "rolled_back"]),
            ),
        )
        .order_by("-id")
    )
    if status == "active":
        qs = qs.filter(status__in=DEPLOYMENT_ACTIVE)
    elif status:
        qs = qs.filter(status=status)
    return qs


def deployment_detail() -> QuerySet:
    """Deployments with what the detail and progress views show (get one by pk)."""
    return Deployment.objects.select_related("created_by")


def deployment_active(deployment: Deployment) -> bool:
    return deployment.status in DEPLOYMENT_ACTIVE


def deployment_waves(deployment: Deployment) -> list[dict]:
    """Waves with their device deployments, for the progress view."""
    devices = list(
        deployment.device_deployments.select_related("device").order_by("wave", "device__name")
    )
    waves = deployment_summary(deployment)["waves"]
    for wave in waves:
        wave["devices"] = [dd for dd in devices if dd.wave == wave["index"]]
        wave["percent"] = int(100 * wave["done"] / wave["size"]) if wave["size"] else 100
    return waves
