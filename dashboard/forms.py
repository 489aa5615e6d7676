"""Forms parse browser input into the shapes rules.services expects and call one service.

Services raise Django ValidationError keyed by field; `ServiceForm.run` turns those into
form errors (unknown keys become non-field errors) so the page shows them next to the
input that caused them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django import forms
from django.core.exceptions import ValidationError

from dashboard import services as dash_services
from rules import services
from rules.choices import Action, Chain, ConnState, Protocol
from rules.models import AddressGroup, AddressObject, Rule, RuleSet, Service, ServiceGroup

SPLIT = re.compile(r"[\s,]+")


def split_list(text: str) -> list[str]:
    """`"a, b  c"` → `["a", "b", "c"]` (commas, spaces or newlines separate items)."""
    return [item for item in SPLIT.split(text or "") if item]


class ServiceForm(forms.Form):
    """A form whose save calls a service and shows the service's field errors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, (forms.CheckboxInput, forms.CheckboxSelectMultiple)):
                css = "form-check-input"
            elif isinstance(widget, forms.Select):
                css = "form-select form-select-sm"
            else:
                css = "form-control form-control-sm"
            widget.attrs.setdefault("class", css)

    def run(self, call: Callable[[], object]):
        """Call the service; on ValidationError attach its messages and return None."""
        try:
            return call()
        except ValidationError as exc:
            self.add_service_errors(exc)
            return None

    def add_service_errors(self, exc: ValidationError) -> None:
        if hasattr(exc, "error_dict"):
            for key, errors in exc.message_dict.items():
                target = key if key in self.fields else None
                prefix = "" if target or key in ("non_field_errors", "__all__") else f"{key}: "
                for message in errors:
                    self.add_error(target, f"{prefix}{message}")
        else:
            for message in exc.messages:
                self.add_error(None, message)


def _choices(choices, blank: str | None = None):
    return ([("", blank)] if blank is not None else []) + list(choices)


class RuleForm(ServiceForm):
    """One filter rule. Lists (addresses, services, ports) are typed comma- or space-separated."""

    enabled = forms.BooleanField(required=False, initial=True)
    chain = forms.ChoiceField(choices=Chain.choices, initial=Chain.INPUT)
    action = forms.ChoiceField(choices=Action.choices, initial=Action.ACCEPT)
    sources = forms.CharField(required=False, help_text="names or literals; empty = any")
    sources_negate = forms.BooleanField(required=False, label="not")
    destinations = forms.CharField(required=False, help_text="names or literals; empty = any")
    destinations_negate = forms.BooleanField(required=False, label="not")
    services = forms.CharField(required=False, help_text="service or service group names")
    protocol = forms.ChoiceField(
        choices=_choices(Protocol.choices, "—"), required=False, help_text="instead of services"
    )
    dports = forms.CharField(required=False, label="Dest. ports", help_text="443, 8000-8100")
    sports = forms.CharField(required=False, label="Source ports")
    icmp_type = forms.CharField(required=False, label="ICMP type")
    in_interface = forms.CharField(required=False, label="In iface")
    out_interface = forms.CharField(required=False, label="Out iface")
    states = forms.MultipleChoiceField(
        choices=ConnState.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    log = forms.BooleanField(required=False)
    log_prefix = forms.CharField(required=False)
    rate_limit = forms.CharField(required=False, help_text="10/second")
    burst = forms.IntegerField(required=False, min_value=1)
    comment = forms.CharField(required=False, max_length=200)
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )
    position = forms.IntegerField(required=False, min_value=1, help_text="empty = at the end")

    LIST_FIELDS = ("sources", "destinations", "services", "dports", "sports")

    @classmethod
    def initial_for(cls, rule: Rule, refs: dict[str, list[str]]) -> dict:
        """The form's initial values for an existing rule (references already as names)."""
        initial = {
            name: getattr(rule, name)
            for name in cls.base_fields
            if name not in cls.LIST_FIELDS and hasattr(rule, name)
        }
        initial.update({k: ", ".join(v) for k, v in refs.items()})
        initial["dports"] = ", ".join(rule.dports)
        initial["sports"] = ", ".join(rule.sports)
        return initial

    def rule_data(self) -> dict:
        """The cleaned form as service data (the shape of a rule in the policy document)."""
        data = dict(self.cleaned_data)
        data.pop("position", None)
        for name in self.LIST_FIELDS:
            data[name] = split_list(data[name])
        for name in (
            "protocol",
            "icmp_type",
            "in_interface",
            "out_interface",
            "log_prefix",
            "rate_limit",
            "comment",
        ):
            data[name] = (data[name] or "").strip()
        data["states"] = list(data["states"])
        return data

    def validate_only(self, ruleset: RuleSet, rule: Rule | None) -> None:
        """Inline validation: the service's checks without saving anything."""
        if self.is_valid():
            self.run(
                lambda: services.rule_build(
                    ruleset=ruleset,
                    data=self.rule_data(),
                    index=services.NameIndex.load(),
                    rule=rule,
                )
            )

    def save(self, ruleset: RuleSet, rule: Rule | None = None) -> Rule | None:
        if not self.is_valid():
            return None
        data = self.rule_data()
        position = self.cleaned_data.get("position")
        if rule is None:
            return self.run(
                lambda: services.rule_create(ruleset=ruleset, data=data, position=position)
            )
        if position:
            data["position"] = position
        return self.run(lambda: services.rule_update(rule=rule, data=data))


class BulkForm(ServiceForm):
    """Bulk actions on the selected rules, as one rules.services.rules_bulk call."""

    action = forms.ChoiceField(choices=[(a, a) for a in ("enable", "disable", "delete", "move")])
    position = forms.IntegerField(required=False, min_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule_ids = [
            int(v) for v in (self.data.getlist("rules") if self.data else []) if str(v).isdigit()
        ]

    def clean(self):
        cleaned = super().clean()
        if not self.rule_ids:
            raise ValidationError("select at least one rule")
        if cleaned.get("action") == "move" and not cleaned.get("position"):
            self.add_error("position", "give the target position (a whole number from 1)")
        return cleaned

    def service_call(self, ruleset: RuleSet) -> dict:
        """The keyword arguments of rules_bulk for the chosen action."""
        action, ids = self.cleaned_data["action"], self.rule_ids
        if action in ("enable", "disable"):
            return {"update": [{"id": pk, "enabled": action == "enable"} for pk in ids]}
        if action == "delete":
            return {"delete": ids}
        chosen = set(ids)
        current = list(ruleset.rules.order_by("position", "id").values_list("id", flat=True))
        picked = [pk for pk in current if pk in chosen]
        rest = [pk for pk in current if pk not in chosen]
        at = min(self.cleaned_data["position"], len(rest) + 1) - 1
        return {"order": rest[:at] + picked + rest[at:]}

    def save(self, ruleset: RuleSet) -> int | None:
        if not self.is_valid():
            return None
        call = self.service_call(ruleset)
        result = self.run(lambda: services.rules_bulk(ruleset=ruleset, **call))
        return None if result is None else len(self.rule_ids)


class PlaceForm(ServiceForm):
    """A drag-and-drop (or keyboard) move: the rule and the neighbour it now sits next to."""

    rule = forms.IntegerField()
    before = forms.IntegerField(required=False)
    after = forms.IntegerField(required=False)

    def save(self, ruleset: RuleSet) -> int | None:
        if not self.is_valid():
            return None
        rules = ruleset.rules.in_bulk(
            [
                v
                for v in (
                    self.cleaned_data["rule"],
                    self.cleaned_data.get("before"),
                    self.cleaned_data.get("after"),
                )
                if v
            ]
        )
        rule = rules.get(self.cleaned_data["rule"])
        if rule is None:
            self.add_error("rule", "no such rule in this rule set (reload the page)")
            return None
        return self.run(
            lambda: dash_services.rule_place(
                rule=rule,
                before=rules.get(self.cleaned_data.get("before") or 0),
                after=rules.get(self.cleaned_data.get("after") or 0),
            )
        )


# --- objects -----------------------------------------------------------------------------


class NamedForm(ServiceForm):
    name = forms.CharField(max_length=63)
    description = forms.CharField(max_length=255, required=False)

    model: type = object

    def __init__(self, *args, instance=None, **kwargs):
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = self.initial_from(instance)
        super().__init__(*args, **kwargs)

    def initial_from(self, obj) -> dict:
        return {name: getattr(obj, name) for name in self.base_fields if hasattr(obj, name)}

    def fill(self, obj) -> None:
        for name in ("name", "description"):
            setattr(obj, name, self.cleaned_data[name].strip())

    def save(self):
        if not self.is_valid():
            return None
        obj = self.instance or self.model()
        self.fill(obj)
        return self.run(lambda: self.persist(obj))

    def persist(self, obj):
        return services.object_save(obj)


class AddressForm(NamedForm):
    model = AddressObject
    value = forms.CharField(
        max_length=100, help_text="198.18.1.10, 198.18.0.0/24 or 198.18.4.10-198.18.4.99"
    )
    field_order = ["name", "value", "description"]

    def fill(self, obj) -> None:
        super().fill(obj)
        obj.value = self.cleaned_data["value"].strip()


class ServiceObjectForm(NamedForm):
    model = Service
    protocol = forms.ChoiceField(choices=Protocol.choices, initial=Protocol.TCP)
    ports = forms.CharField(required=False, help_text="destination ports: 443, 8000-8100")
    source_ports = forms.CharField(required=False)
    icmp_type = forms.CharField(required=False, max_length=32)
    field_order = ["name", "protocol", "ports", "source_ports", "icmp_type", "description"]

    def initial_from(self, obj) -> dict:
        initial = super().initial_from(obj)
        initial["ports"] = ", ".join(obj.ports)
        initial["source_ports"] = ", ".join(obj.source_ports)
        return initial

    def fill(self, obj) -> None:
        super().fill(obj)
        obj.protocol = self.cleaned_data["protocol"]
        obj.ports = split_list(self.cleaned_data["ports"])
        obj.source_ports = split_list(self.cleaned_data["source_ports"])
        obj.icmp_type = self.cleaned_data["icmp_type"].strip()


class GroupForm(NamedForm):
    members = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="names or literals, separated by commas, spaces or new lines",
    )
    field_order = ["name", "members", "description"]

    def initial_from(self, obj) -> dict:
        initial = super().initial_from(obj)
        initial["members"] = "\n".join(m.ref for m in obj.members.all())
        return initial


class AddressGroupForm(GroupForm):
    model = AddressGroup

    def persist(self, obj):
        return dash_services.address_group_save(
            group=obj, members=split_list(self.cleaned_data["members"])
        )


class ServiceGroupForm(GroupForm):
    model = ServiceGroup

    def persist(self, obj):
        return dash_services.service_group_save(
            group=obj, members=split_list(self.cleaned_data["members"])
        )


class RuleSetForm(NamedForm):
    model = RuleSet
    requires_approval = forms.BooleanField(
        required=False, help_text="edits become pending changes an approver must accept"
    )

    def fill(self, obj) -> None:
        super().fill(obj)
        obj.requires_approval = self.cleaned_data["requires_approval"]


OBJECT_FORMS: dict[str, type[NamedForm]] = {
    "addresses": AddressForm,
    "address-groups": AddressGroupForm,
    "services": ServiceObjectForm,
    "service-groups": ServiceGroupForm,
}


# --- deployments -------------------------------------------------------------------------


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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from rules.models import DeviceGroup

        self.fields["device_group"].choices = [("", "—")] + list(
            DeviceGroup.objects.values_list("pk", "name")
        )

    def save(self, user):
        if not self.is_valid():
            return None
        from agents.services import deploy_create

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
            )
        )


# --- revisions -------------------------------------------------------------------------------


class RollbackForm(ServiceForm):
    message = forms.CharField(required=False, max_length=500, label="Why roll back?")

    def save(self, revision, user):
        if not self.is_valid():
            return None
        from rules.revisions import revision_rollback

        return self.run(
            lambda: revision_rollback(
                revision=revision, author=user, message=self.cleaned_data["message"]
            )
        )


class ReviewForm(ServiceForm):
    decision = forms.ChoiceField(choices=[("approve", "approve"), ("reject", "reject")])
    comment = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def save(self, revision, user):
        if not self.is_valid():
            return None
        from django.core.exceptions import PermissionDenied

        from rules.revisions import revision_approve, revision_reject

        review = revision_approve if self.cleaned_data["decision"] == "approve" else revision_reject
        try:
            return self.run(
                lambda: review(
                    revision=revision, reviewer=user, comment=self.cleaned_data["comment"]
                )
            )
        except PermissionDenied as exc:  # e.g. reviewing one's own change: say why, on the form
            self.add_error(None, str(exc))
            return None


# --- packet tracer ----------------------------------------------------------------------------


class TraceForm(ServiceForm):
    """A packet to trace through a device's compiled policy (as it would deploy now)."""

    device = forms.ChoiceField()
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
    in_interface = forms.CharField(required=False, max_length=16, label="In iface")
    out_interface = forms.CharField(required=False, max_length=16, label="Out iface")
    state = forms.ChoiceField(
        choices=[(s, s) for s in ("new", "established", "related", "invalid", "untracked")],
        initial="new",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from rules.models import Device

        self.fields["device"].choices = list(
            Device.objects.order_by("name").values_list("pk", "name")
        )

    def trace(self):
        """The TraceResult, or None with the problems attached to the form."""
        if not self.is_valid():
            return None
        from django.conf import settings
        from django.utils import timezone

        from compiler import CompileOptions, CompilerError, Packet, PolicyDocument, trace
        from dashboard.selectors import current_document
        from rules.models import Device

        params = {k: v for k, v in self.cleaned_data.items() if k != "device"}
        try:
            packet = Packet.from_params(params)
        except ValueError as exc:
            for error in getattr(exc, "errors", []):
                self.add_error(error.path if error.path in self.fields else None, error.message)
            if not getattr(exc, "errors", None):
                self.add_error(None, str(exc))
            return None
        device = Device.objects.get(pk=self.cleaned_data["device"])
        try:
            doc = PolicyDocument.from_dict(current_document(device))
            options = CompileOptions(ipset_threshold=settings.RAMPART["IPSET_THRESHOLD"])
            return trace(doc, device.name, packet, options=options, now=timezone.now())
        except CompilerError as exc:
            for error in exc.errors[:20]:
                self.add_error(None, str(error))
            return None
        except ValidationError as exc:  # e.g. a rule set needing approval has no approved revision
            self.add_service_errors(exc)
            return None
