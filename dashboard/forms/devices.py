"""A device's settings page: management sources, health probes, default policies, flags,
groups and rule sets, and (admins only) the override that lets management sources leave the
console out. What the device enforces waits for approval where its rule sets require it
(rules.services.device_changes)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import PermissionDenied

from core.accounts import roles
from dashboard.forms.base import ServiceForm, split_list
from dashboard.forms.probes import ProbesField
from rules.choices import DefaultAction
from rules.console_sources import device_write_check
from rules.models import Device, PendingDeviceChange
from rules.services import device_update

_OVERRIDE = ("allow_console_lockout", "console_lockout_reason")
_DEFAULTS = ("default_input", "default_forward", "default_output")
_FLAGS = ("stateful", "allow_loopback", "forward_fallthrough")
_REFS = ("groups", "rulesets")
_YES_NO = [("true", "yes"), ("false", "no")]


def _yes_no(label: str) -> forms.TypedChoiceField:
    """A flag as a select (a browser always sends it, so a post that leaves it out keeps it)."""
    return forms.TypedChoiceField(
        choices=_YES_NO, coerce=lambda v: v == "true", empty_value=None, required=False, label=label
    )


class DeviceSettingsForm(ServiceForm):
    """Management sources and probes; the lockout override only for admins."""

    management_sources = forms.CharField(
        required=False,
        help_text="addresses, CIDRs or address names that always reach the agent port and "
        "ssh; they must cover the console's addresses",
    )
    probes = ProbesField()
    allow_console_lockout = forms.BooleanField(
        required=False, label="Allow management sources that leave the console out"
    )
    console_lockout_reason = forms.CharField(required=False, max_length=255, label="Why")
    default_input = forms.ChoiceField(choices=DefaultAction.choices, required=False)
    default_forward = forms.ChoiceField(choices=DefaultAction.choices, required=False)
    default_output = forms.ChoiceField(choices=DefaultAction.choices, required=False)
    stateful = _yes_no("Stateful (accept established, drop invalid)")
    allow_loopback = _yes_no("Allow loopback")
    forward_fallthrough = _yes_no("Forward fall-through (Docker/kube-proxy hosts)")
    groups = forms.CharField(required=False, help_text="device group names, in order")
    rulesets = forms.CharField(
        required=False, label="Rule sets", help_text="its own rule sets, after its groups'"
    )

    def __init__(self, *args, device: Device, user, **kwargs):
        self.device = device
        self.user = user
        kwargs.setdefault(
            "initial",
            {
                "management_sources": ", ".join(device.management_sources or []),
                "probes": device.probes or [],
                **{f: getattr(device, f) for f in _OVERRIDE},
                **{f: getattr(device, f) for f in _DEFAULTS},
                **{f: "true" if getattr(device, f) else "false" for f in _FLAGS},
                "groups": ", ".join(link.group.name for link in device.group_links.all()),
                "rulesets": ", ".join(link.ruleset.name for link in device.ruleset_links.all()),
            },
        )
        super().__init__(*args, **kwargs)
        if not roles.has_any(user, roles.CAN_ADMINISTER):
            for name in _OVERRIDE:
                del self.fields[name]

    def save(self) -> tuple[Device, PendingDeviceChange | None] | None:
        """The saved device and the change held for approval (if its rule sets ask for
        one), or None with the errors on the form."""
        if not self.is_valid():
            return None
        data = self.cleaned_data
        before = Device.objects.get(pk=self.device.pk)
        candidate = Device.objects.get(pk=self.device.pk)
        candidate.management_sources = split_list(data["management_sources"])
        candidate.probes = data["probes"]
        for name in _OVERRIDE:
            if name in self.fields:
                setattr(candidate, name, data[name])
        enforced = [f for f in (*_DEFAULTS, *_FLAGS) if self._posted(f)]
        for name in enforced:
            setattr(candidate, name, data[name])
        try:
            self.run(lambda: device_write_check(device=candidate, before=before, user=self.user))
        except PermissionDenied as exc:
            self.add_error(None, str(exc))
        if self.errors:
            return None
        changes = {
            "management_sources": candidate.management_sources,
            "probes": candidate.probes,
            **{f: getattr(candidate, f) for f in _OVERRIDE},
            **{f: getattr(candidate, f) for f in enforced},
        }
        refs = {f: split_list(data[f]) for f in _REFS if self.add_prefix(f) in self.data}
        held = self.run(lambda: device_update(device=before, data=changes, refs=refs))
        if self.errors:
            return None
        return before, held

    def _posted(self, name: str) -> bool:
        """The field was sent and holds a value (left out: the setting stays as it is)."""
        return self.add_prefix(name) in self.data and self.cleaned_data.get(name) not in (None, "")
