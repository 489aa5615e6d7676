"""Forms of named objects: addresses, services, their groups, zones, and rule set settings."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.db.models import Model

from dashboard import services as dash_services
from dashboard.forms.base import ServiceForm, split_list
from rules import services
from rules.choices import Protocol
from rules.models import AddressGroup, AddressObject, RuleSet, Service, ServiceGroup, Zone
from rules.selectors import group_member_rows, member_of_row


class NamedForm(ServiceForm):
    """A named object: `fill` copies the fields onto it, `persist` saves it via a service."""

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
    """A group and its members. A group of more than LARGE_GROUP members is edited by
    difference (members to add, members to remove; the page lists them in pages), never
    by resending every member."""

    LARGE_GROUP = 500
    save_members: Callable[..., Model]  # the dashboard service saving group and members
    members = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="names or literals, separated by commas, spaces or new lines",
    )
    field_order = ["name", "members", "description"]

    def __init__(self, *args, instance=None, **kwargs):
        self.large = instance is not None and instance.members.count() > self.LARGE_GROUP
        super().__init__(*args, instance=instance, **kwargs)
        if self.large:
            del self.fields["members"]
            for name, verb in (("add_members", "add"), ("remove_members", "remove")):
                self.fields[name] = forms.CharField(
                    required=False,
                    widget=forms.Textarea(attrs={"rows": 3}),
                    help_text=f"members to {verb}: names or literals, separated by commas, "
                    "spaces or new lines",
                )

    def initial_from(self, obj) -> dict:
        initial = super().initial_from(obj)
        if obj.members.count() <= self.LARGE_GROUP:
            initial["members"] = "\n".join(member_of_row(r)[0] for r in group_member_rows(obj))
        return initial

    def persist(self, obj):
        if self.large:
            return dash_services.group_save_changing_members(
                group=obj,
                add=split_list(self.cleaned_data["add_members"]),
                remove=split_list(self.cleaned_data["remove_members"]),
            )
        return type(self).save_members(group=obj, members=split_list(self.cleaned_data["members"]))


class AddressGroupForm(GroupForm):
    model = AddressGroup
    save_members = staticmethod(dash_services.address_group_save)


class ServiceGroupForm(GroupForm):
    model = ServiceGroup
    save_members = staticmethod(dash_services.service_group_save)


class ZoneForm(NamedForm):
    """A zone: its interfaces and optional networks (zone_save validates and keeps the
    rules naming it in step)."""

    model = Zone
    interfaces = forms.CharField(help_text="eth1, veth+ (a trailing + is a wildcard)")
    networks = forms.CharField(
        required=False,
        help_text="optional: 198.18.1.0/24, … (in_zone: only from them; out_zone: only to them)",
    )
    field_order = ["name", "interfaces", "networks", "description"]

    def initial_from(self, obj) -> dict:
        initial = super().initial_from(obj)
        initial["interfaces"] = ", ".join(obj.interfaces)
        initial["networks"] = ", ".join(obj.networks)
        return initial

    def fill(self, obj) -> None:
        super().fill(obj)
        obj.interfaces = split_list(self.cleaned_data["interfaces"])
        obj.networks = split_list(self.cleaned_data["networks"])

    def persist(self, obj):
        return services.zone_save(obj)


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
    "zones": ZoneForm,
}
