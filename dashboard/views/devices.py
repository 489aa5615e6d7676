"""Device pages: the list, one device, and stable links by name."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from dashboard.forms.device_changes import DeviceChangeReviewForm
from dashboard.forms.devices import DeviceSettingsForm
from dashboard.permissions import editor, reader
from dashboard.selectors import devices
from dashboard.views.common import page_size
from rules.console_sources import console_lockout_errors, console_sources
from rules.models import Device
from rules.services import pending_device_change


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
            "console_sources": console_sources(device),
            "lockout": console_lockout_errors(device).get("management_sources", []),
            "pending": pending_device_change(device),
            "review_form": DeviceChangeReviewForm(),
            "nav": "devices",
        },
    )


@editor
def device_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """Management sources and health probes (and, for admins, the lockout override)."""
    device = get_object_or_404(Device, pk=pk)
    form = DeviceSettingsForm(request.POST or None, device=device, user=request.user)
    if request.method == "POST":
        saved = form.save()
        if saved is not None:
            held = saved[1]
            messages.success(
                request,
                f"Settings of {device.name} saved"
                + (": what it enforces waits for another approver." if held else "."),
            )
            return redirect("dashboard:device", pk=device.pk)
    return render(
        request,
        "dashboard/devices/settings.html",
        {
            "device": device,
            "form": form,
            "console_sources": console_sources(device),
            "nav": "devices",
        },
    )


@reader
def device_redirect(request: HttpRequest, name: str) -> HttpResponse:
    """`/devices/by-name/<name>/`: stable links from the audit log and the API."""
    device = get_object_or_404(Device, name=name)
    return redirect("dashboard:device", pk=device.pk)
