"""The rule editor's forms: one rule, bulk actions on selected rules, a drag-and-drop move."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from dashboard import services as dash_services
from dashboard.forms.base import ServiceForm, choices_with_blank, split_list
from rules import services
from rules.choices import Action, Chain, ConnState, Protocol
from rules.models import Rule, RuleSet, Zone

PER_SOURCE_KEYS = ("rate", "burst", "ipv4_prefix", "ipv6_prefix")


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
        choices=choices_with_blank(Protocol.choices, "—"),
        required=False,
        help_text="instead of services",
    )
    dports = forms.CharField(required=False, label="Dest. ports", help_text="443, 8000-8100")
    sports = forms.CharField(required=False, label="Source ports")
    icmp_type = forms.CharField(required=False, label="ICMP type")
    in_interface = forms.CharField(required=False, label="In iface")
    out_interface = forms.CharField(required=False, label="Out iface")
    # choices: the zones there are (set per form); instead of the interface of that side
    in_zone = forms.ChoiceField(required=False, label="In zone", help_text="instead of In iface")
    out_zone = forms.ChoiceField(required=False, label="Out zone", help_text="instead of Out iface")
    states = forms.MultipleChoiceField(
        choices=ConnState.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    log = forms.BooleanField(required=False)
    # kept as typed, spaces included ("dropped: " ends with its space), as the REST API does
    log_prefix = forms.CharField(required=False, strip=False)
    rate_limit = forms.CharField(required=False, help_text="10/second")
    burst = forms.IntegerField(required=False, min_value=1)
    # rate_limit_per_source, one field per key (composed in rule_data)
    per_source_rate = forms.CharField(
        required=False, label="Per source", help_text="6/minute: a token bucket per source"
    )
    per_source_burst = forms.IntegerField(required=False, min_value=1, label="Per-source burst")
    per_source_ipv4_prefix = forms.IntegerField(
        required=False, min_value=1, max_value=32, label="IPv4 prefix", help_text="empty = 32"
    )
    per_source_ipv6_prefix = forms.IntegerField(
        required=False, min_value=1, max_value=128, label="IPv6 prefix", help_text="empty = 128"
    )
    comment = forms.CharField(required=False, max_length=200)
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )
    position = forms.IntegerField(required=False, min_value=1, help_text="empty = at the end")

    LIST_FIELDS = ("sources", "destinations", "services", "dports", "sports")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        zones = [
            ("", "—"),
            *((n, n) for n in Zone.objects.order_by("name").values_list("name", flat=True)),
        ]
        self.fields["in_zone"].choices = zones
        self.fields["out_zone"].choices = zones

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
        for key, value in (rule.rate_limit_per_source or {}).items():
            initial[f"per_source_{key}"] = value
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
            "in_zone",
            "out_zone",
            "rate_limit",
            "comment",
        ):
            data[name] = (data[name] or "").strip()
        data["states"] = list(data["states"])
        data["rate_limit_per_source"] = self.per_source(data)
        return data

    @staticmethod
    def per_source(data: dict) -> dict | None:
        """The `per_source_*` fields (taken out of `data`) as rate_limit_per_source; None
        when no rate is given (the service words what is wrong with a bad one)."""
        given = {k: data.pop(f"per_source_{k}", None) for k in PER_SOURCE_KEYS}
        given["rate"] = (given["rate"] or "").strip()
        if not given["rate"]:
            return None
        return {k: v for k, v in given.items() if v not in (None, "")}

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

    action = forms.ChoiceField(choices=[(a, a) for a in dash_services.BULK_ACTIONS])
    position = forms.IntegerField(required=False, min_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule_ids = [
            int(v) for v in (self.data.getlist("rules") if self.data else []) if str(v).isdecimal()
        ]

    def clean(self):
        cleaned = super().clean()
        if not self.rule_ids:
            raise ValidationError("select at least one rule")
        if cleaned.get("action") == "move" and not cleaned.get("position"):
            self.add_error("position", "give the target position (a whole number from 1)")
        return cleaned

    def save(self, ruleset: RuleSet) -> int | None:
        if not self.is_valid():
            return None
        return self.run(
            lambda: dash_services.rules_bulk_action(
                ruleset=ruleset,
                action=self.cleaned_data["action"],
                rule_ids=self.rule_ids,
                position=self.cleaned_data.get("position"),
            )
        )


class PlaceForm(ServiceForm):
    """A drag-and-drop (or keyboard) move: the rule and the neighbour it now sits next to."""

    rule = forms.IntegerField()
    before = forms.IntegerField(required=False)
    after = forms.IntegerField(required=False)

    def save(self, ruleset: RuleSet) -> int | None:
        if not self.is_valid():
            return None
        return self.run(
            lambda: dash_services.rule_drop(
                ruleset=ruleset,
                rule_id=self.cleaned_data["rule"],
                before_id=self.cleaned_data.get("before"),
                after_id=self.cleaned_data.get("after"),
            )
        )
