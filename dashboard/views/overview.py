"""The overview page and its lazily loaded "rules without hits" block."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.audit.selectors import audit_status
from dashboard.permissions import reader
from dashboard.selectors import deployments, devices, rulesets

IDLE_DAY_CHOICES = (7, 30, 90, 180)


def _idle_days(request: HttpRequest) -> int:
    try:
        return max(1, min(int(request.GET.get("days", 30)), 365))
    except ValueError:
        return 30


@reader
def overview(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/overview.html",
        {
            "devices": devices.device_counts(),
            "deployments": deployments.deployment_counts(),
            "recent_deployments": deployments.deployment_list()[:8],
            "idle_days": _idle_days(request),
            "problem_devices": devices.device_problems(),
            "expiring": rulesets.rules_expiring(),
            "expiry_days": rulesets.EXPIRY_WINDOW.days,
            "audit": audit_status(),
            "nav": "overview",
        },
    )


@reader
def overview_idle(request: HttpRequest) -> HttpResponse:
    """Rules without hits: loaded after the overview (it reads every rule's counters)."""
    days = _idle_days(request)
    idle_count, idle = devices.rules_without_hits(days)
    return render(
        request,
        "dashboard/_overview_idle.html",
        {
            "idle_days": days,
            "idle_count": idle_count,
            "idle": idle,
            "day_choices": IDLE_DAY_CHOICES,
        },
    )
