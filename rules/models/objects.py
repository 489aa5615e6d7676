"""Address and service objects, and their groups."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from compiler import values
from rules.choices import Protocol

from .base import NamedModel, check, raise_if


class AddressObject(NamedModel):
    """One address, CIDR network or range (IPv4 or IPv6), known by name."""

    value = models.CharField(
        max_length=100, help_text="198.18.1.10, 198.18.0.0/24 or 198.18.4.10-198.18.4.99"
    )

    class Meta(NamedModel.Meta):
        verbose_name = "address"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        check(errors, "value", values.parse_address, self.value)
        raise_if(errors)

    @property
    def family(self) -> int | None:
        try:
            return values.parse_address(self.value).version
        except ValueError:
            return None

    @property
    def kind(self) -> str:
        if "-" in self.value:
            return "range"
        return "network" if "/" in self.value else "host"


class AddressGroup(NamedModel):
    """A named set of addresses: objects, nested groups and literals."""

    member_set = models.CharField(
        max_length=64,
        blank=True,
        editable=False,
        help_text="the member set (rules.member_sets) holding the members' keys in order, a "
        "copy of the rows kept by rules.services.group_members; empty: read the rows",
    )

    class Meta(NamedModel.Meta):
        verbose_name = "address group"


class _MemberRow(models.Model):
    """A member row saved or deleted one at a time (the admin, tests) makes its group's
    stored member set stale: forget it (rules.services.group_members keeps it otherwise)."""

    class Meta:
        abstract = True

    def _forget_member_set(self) -> None:
        if self.group_id:
            type(self)._meta.get_field("group").related_model.objects.filter(
                pk=self.group_id
            ).update(member_set="")

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        self._forget_member_set()

    def delete(self, *args, **kwargs):
        self._forget_member_set()
        return super().delete(*args, **kwargs)


class AddressGroupMember(_MemberRow):
    """One member of an address group: exactly one of address, group or literal."""

    group = models.ForeignKey(
        "rules.AddressGroup", on_delete=models.CASCADE, related_name="members"
    )
    index = models.PositiveIntegerField(default=0)
    address = models.ForeignKey(
        "rules.AddressObject",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="group_memberships",
    )
    subgroup = models.ForeignKey(
        "rules.AddressGroup",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="parent_memberships",
    )
    literal = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["group", "index", "id"]
        # a page of a 100,000-member group, and the end a new member is appended at,
        # without sorting the whole group
        indexes = [
            models.Index(fields=["group", "index"], name="rules_agm_group_order"),
            # a group's nested groups without reading its 100,000 literals (a small index:
            # only the rows that are subgroups)
            models.Index(
                fields=["group"],
                condition=models.Q(subgroup__isnull=False),
                name="rules_agm_group_nested",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                name="addressgroupmember_exactly_one",
                condition=(
                    models.Q(address__isnull=False, subgroup__isnull=True, literal="")
                    | models.Q(address__isnull=True, subgroup__isnull=False, literal="")
                    | (
                        models.Q(address__isnull=True, subgroup__isnull=True)
                        & ~models.Q(literal="")
                    )
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.group} ∋ {self.ref}"

    @property
    def ref(self) -> str:
        return (
            self.address.name
            if self.address_id
            else self.subgroup.name
            if self.subgroup_id
            else self.literal
        )

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.literal:
            check(errors, "literal", values.parse_address, self.literal)
        if self.subgroup_id and self.group_id and self.subgroup_id == self.group_id:
            errors.setdefault("subgroup", []).append("a group cannot contain itself")
        raise_if(errors)


class Service(NamedModel):
    """A protocol with optional destination/source ports or ICMP type."""

    protocol = models.CharField(max_length=8, choices=Protocol.choices, default=Protocol.TCP)
    ports = models.JSONField(
        default=list, blank=True, help_text='destination ports: ["443", "8000-8100"]'
    )
    source_ports = models.JSONField(default=list, blank=True)
    icmp_type = models.CharField(max_length=32, blank=True)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        check(errors, "protocol", values.parse_protocol, self.protocol)
        dports = check(errors, "ports", values.parse_ports, self.ports) or []
        sports = check(errors, "source_ports", values.parse_ports, self.source_ports) or []
        if "ports" not in errors and "source_ports" not in errors:
            check(
                errors,
                "ports" if dports else "source_ports",
                values.check_ports_allowed,
                self.protocol,
                dports,
                sports,
            )
        if self.icmp_type:
            check(errors, "icmp_type", values.parse_icmp_type, self.protocol, self.icmp_type)
        raise_if(errors)


class ServiceGroup(NamedModel):
    """A named set of services (and nested service groups)."""

    member_set = models.CharField(
        max_length=64,
        blank=True,
        editable=False,
        help_text="the member set (rules.member_sets) holding the members' keys in order, a "
        "copy of the rows kept by rules.services.group_members; empty: read the rows",
    )

    class Meta(NamedModel.Meta):
        verbose_name = "service group"


class ServiceGroupMember(_MemberRow):
    group = models.ForeignKey(
        "rules.ServiceGroup", on_delete=models.CASCADE, related_name="members"
    )
    index = models.PositiveIntegerField(default=0)
    service = models.ForeignKey(
        "rules.Service",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="group_memberships",
    )
    subgroup = models.ForeignKey(
        "rules.ServiceGroup",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="parent_memberships",
    )

    class Meta:
        ordering = ["group", "index", "id"]
        constraints = [
            models.CheckConstraint(
                name="servicegroupmember_exactly_one",
                condition=models.Q(service__isnull=False, subgroup__isnull=True)
                | models.Q(service__isnull=True, subgroup__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.group} ∋ {self.ref}"

    @property
    def ref(self) -> str:
        return self.service.name if self.service_id else self.subgroup.name

    def clean(self) -> None:
        if self.subgroup_id and self.subgroup_id == self.group_id:
            raise ValidationError({"subgroup": "a group cannot contain itself"})
