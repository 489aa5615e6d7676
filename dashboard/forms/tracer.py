"""The packet tracer's form: a packet traced through a device's policy, the one the agent
holds by default, or the candidate / working copy (agents.device_policy)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from agents.device_policy import NothingDeployed, Target, device_policy
from compiler import CompilerError, Packet, PacketError
from compiler.tracer_nat import parse_local_addresses
from compiler.tracer_zones import trace_zones
from dashboard.forms.base import ServiceForm
from rules.choices import Chain
from rules.models import Device, Zone


class TraceForm(ServiceForm):
    """A packet to trace through a device's compiled policy."""

    writes = False  # reads only: no audit reason or ticket

    device = forms.ChoiceField()
    target = forms.ChoiceField(
        choices=[
            (Target.DEPLOYED, "deployed (what the agent holds)"),
            (Target.CANDIDATE, "candidate (what a deploy would push now)"),
            (Target.WORKING_COPY, "working copy (unapproved edits included)"),
        ],
        initial=Target.DEPLOYED,
        required=False,
        label="Policy",
    )
    chain = forms.ChoiceField(choices=Chain.choices, initial=Chain.INPUT)
    protocol = forms.ChoiceField(
        choices=[(p, p) for p in ("tcp", "udp", "icmp", "icmpv6")], initial="tcp"
    )
    source = forms.CharField(
        max_length=45, widget=forms.TextInput(attrs={"placeholder": "198.18.0.5"})
    )
    destination = forms.CharField(
        max_length=45, widget=forms.TextInput(attrs={"placeholder": "198.18.1.10"})
    )
    sport = forms.CharField(required=False, max_length=5, label="Source port")
    dport = forms.CharField(required=False, max_length=5, label="Dest. port")
    icmp_type = forms.CharField(required=False, max_length=32, label="ICMP type")
    hop_limit = forms.CharField(
        required=False,
        max_length=3,
        label="Hop limit",
        help_text="IPv6: empty = 255 for neighbour discovery, else 64",
    )
    in_interface = forms.CharField(required=False, max_length=16, label="In iface")
    out_interface = forms.CharField(required=False, max_length=16, label="Out iface")
    # instead of the interface of that side: one trace per interface of the zone
    in_zone = forms.ChoiceField(required=False, label="In zone", help_text="instead of In iface")
    out_zone = forms.ChoiceField(required=False, label="Out zone", help_text="instead of Out iface")
    state = forms.ChoiceField(
        required=False,
        choices=[
            ("", "as conntrack: new (MLD, ND untracked)"),
            *((s, s) for s in ("new", "established", "related", "invalid", "untracked")),
        ],
        initial="",
    )
    local_addresses = forms.CharField(
        required=False,
        max_length=500,
        label="Device's other addresses",
        help_text="besides its address, comma separated: a DNAT to one of them stays local",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["device"].choices = list(
            Device.objects.order_by("name").values_list("pk", "name")
        )
        zones = [
            ("", "—"),
            *((n, n) for n in Zone.objects.order_by("name").values_list("name", flat=True)),
        ]
        self.fields["in_zone"].choices = zones
        self.fields["out_zone"].choices = zones

    def trace(self):
        """The TraceResult, or None with the problems attached to the form."""
        if not self.is_valid():
            return None
        zones = {k: self.cleaned_data.get(k) for k in ("in_zone", "out_zone")}
        params = {
            k: v
            for k, v in self.cleaned_data.items()
            if k not in ("device", "target", "local_addresses", "in_zone", "out_zone")
        }
        try:
            local = parse_local_addresses(self.cleaned_data.get("local_addresses"))
            packet = Packet.from_params(params)
        except ValueError as exc:
            for error in getattr(exc, "errors", []):
                self.add_error(error.path if error.path in self.fields else None, error.message)
            if not getattr(exc, "errors", None):
                self.add_error(None, str(exc))
            return None
        device = Device.objects.get(pk=self.cleaned_data["device"])
        self.traced = Target(self.cleaned_data.get("target") or Target.DEPLOYED)
        try:
            tracer = device_policy(device, self.traced).tracer(local)
            if any(zones.values()):
                # a dict: {"verdict", "traces": [...]} (compiler.tracer_zones)
                return trace_zones(tracer, {**params, **zones}, tracer.program.zones)
            return tracer.trace(packet)
        except PacketError as exc:
            for error in exc.errors:
                self.add_error(error.path if error.path in self.fields else None, error.message)
            return None
        except NothingDeployed as exc:
            self.add_error("target", f"{exc}: trace the candidate instead")
            return None
        except CompilerError as exc:
            for error in exc.errors[:20]:
                self.add_error(None, str(error))
            return None
        except ValidationError as exc:  # e.g. a rule set needing approval has no approved revision
            self.add_service_errors(exc)
            return None
