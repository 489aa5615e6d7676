"""The deploy form (devices, a device group or a rule set's devices, and the rollout), and
the forms that resume or cancel a rollout."""

from __future__ import annotations

from collections.abc import Callable

from django import forms

from agents.models import Deployment
from agents.services import (
    RolloutStateError,
    deploy_create,
    deployment_cancel,
    deployment_resume,
)
from dashboard.forms.base import ServiceForm
from dashboard.forms.probes import parse_probes
from dashboard.selectors.devices import device_group_choices


class DeployForm(ServiceForm):
    """Start a deployment to devices, a device group or every device using a rule set."""

    device = forms.IntegerField(required=False, widget=forms.HiddenInput)
    ruleset = forms.IntegerField(required=False, widget=forms.HiddenInput)
    device_group = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, label="Device group"
    )
    canary = forms.IntegerField(required=False, min_value=0, help_text="devices in the first wave")
    wave_size = forms.IntegerField(required=False, min_value=1, label="Wave size")
    wave_percent = forms.IntegerField(required=False, min_value=1, max_value=100, label="Wave %")
    halt_on_failure = forms.BooleanField(required=False, initial=True, label="Halt on failure")
    confirm_timeout = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=3600,
        help_text="seconds the agent waits for confirmation",
    )
    reason = forms.CharField(required=False, max_length=255)
    probes = forms.CharField(
        required=False,
        label="Probes (override)",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="empty: each device's own probes; `none`: run none; else one a line, "
        "e.g. tcp 198.18.0.1:22 timeout=2",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["device_group"].choices = [("", "—"), *device_group_choices()]

    def clean_probes(self) -> list | None:
        text = (self.cleaned_data.get("probes") or "").strip()
        if not text:
            return None
        return [] if text.lower() == "none" else parse_probes(text)

    def save(self, user):
        if not self.is_valid():
            return None
        data = self.cleaned_data
        rollout = {
            key: data[key] for key in ("canary", "wave_size", "wave_percent") if data.get(key)
        }
        if rollout:
            rollout["halt_on_failure"] = bool(data.get("halt_on_failure"))
        return self.run(
            lambda: deploy_create(
                user=user,
                devices=[data["device"]] if data.get("device") else None,
                device_group=data.get("device_group"),
                ruleset=data.get("ruleset"),
                confirm_timeout=data.get("confirm_timeout"),
                rollout=rollout or None,
                reason=data.get("reason") or "",
                probes=data.get("probes"),
            )
        )


class _RolloutControlForm(ServiceForm):
    """A resume or cancel: an optional reason; a refusal (the state forbids it) is an error."""

    reason = forms.CharField(required=False, max_length=255)

    def _call(self, control: Callable[..., Deployment], **params) -> Deployment | None:
        if not self.is_valid():
            return None
        try:
            return control(**params, **self.cleaned_data)
        except RolloutStateError as exc:
            self.add_error(None, str(exc))
            return None


class RolloutResumeForm(_RolloutControlForm):
    """Resume a halted rollout, optionally pushing the failed wave's devices again."""

    retry_failed = forms.BooleanField(required=False, label="Retry the failed devices")

    def save(self, *, deployment_id: int, user) -> Deployment | None:
        return self._call(deployment_resume, deployment_id=deployment_id, user=user)


class RolloutCancelForm(_RolloutControlForm):
    """Cancel a queued, running or halted rollout."""

    def save(self, *, deployment_id: int, user) -> Deployment | None:
        return self._call(deployment_cancel, deployment_id=deployment_id, user=user)
