"""Device pages: the list, one device, and stable links by name."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from dashboard.permissions import reader
from dashboard.selectors import devices
from dashboard.views.common import page_size
from rules.models import Device


@reader
def device_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    q = request.GET.get("q", "").strip()
    page = Paginator(devices.device_search(status=status, q=q), page_size(request)).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "dashboard/devices/list.html",
        {"page": page, "status": status, "q": q, "nav": "devices"},
    )


@reader
def device_detail(request: HttpRequest, pk: int) -> HttpResponse:
    device = get_object_or_404(devices.device_list(), pk=pk)
    return render(
        request,
        "dashboard/devices/detail.html",
        {
            "device": device,
            "facts": sorted((device.facts or {}).items()),
            "counters": devices.device_counters(device),
            "recent": devices.device_deployments(device),
            "nav": "devices",
        },
    )


@reader
def device_redirect(request: HttpRequest, name: str) -> HttpResponse:
    """`/devices/by-name/<name>/`: stable links from the audit log and the API."""
    device = get_object_or_404(Device, name=name)
    return redirect("dashboard:device", pk=device.pk)
