"""Approve or reject a pending device change (four-eyes on what a device enforces)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import PermissionDenied

from dashboard.forms.base import ServiceForm
from rules.models import PendingDeviceChange
from rules.services import device_change_approve, device_change_reject


class DeviceChangeReviewForm(ServiceForm):
    decision = forms.ChoiceField(choices=[("approve", "approve"), ("reject", "reject")])
    comment = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def save(self, change: PendingDeviceChange, user) -> PendingDeviceChange | None:
        """The reviewed change, or None with the refusal on the form (e.g. one's own)."""
        if not self.is_valid():
            return None
        review = (
            device_change_approve
            if self.cleaned_data["decision"] == "approve"
            else device_change_reject
        )
        try:
            return self.run(
                lambda: review(change=change, reviewer=user, comment=self.cleaned_data["comment"])
            )
        except PermissionDenied as exc:
            self.add_error(None, str(exc))
            return None
