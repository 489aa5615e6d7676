"""Reviewing a pending device change from the device page."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from dashboard.forms.device_changes import DeviceChangeReviewForm
from dashboard.permissions import approver
from dashboard.views.common import form_errors
from rules.models import PendingDeviceChange


@approver
@require_POST
def device_change_review(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve (the device gets the change; the next deploy pushes it) or reject."""
    change = get_object_or_404(PendingDeviceChange.objects.select_related("device", "group"), pk=pk)
    form = DeviceChangeReviewForm(request.POST)
    done = form.save(change, request.user)
    if done is None:
        messages.error(request, "Review refused: " + form_errors(form))
    else:
        messages.success(request, f"Change of {change.target} {done.status}.")
    if change.device_id is None:  # a device group's change: reviewed from the approvals page
        return redirect("dashboard:approvals")
    return redirect("dashboard:device", pk=change.device_id)
