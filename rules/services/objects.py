"""Writes of named objects (addresses, services, their groups, rule sets, devices and device
groups as policy targets): validate, save, set group members (as sets: see
rules.services.group_members), delete only when unused."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model

from rules.models import AddressGroup, AddressObject, RuleSet, Service, ServiceGroup
from rules.revisions.capture import revisions_touch
from rules.revisions.review import guard_ruleset_save
from rules.services.group_members import MemberDiff, group_members_set
from rules.services.names import NameIndex
from rules.where_used import in_use_message, where_used


def _check_cross_kind_name(obj: Model) -> None:
    """An address and an address group (or a service and a service group) may not share a name."""
    twins = {
        AddressObject: AddressGroup,
        AddressGroup: AddressObject,
        Service: ServiceGroup,
        ServiceGroup: Service,
    }
    other = twins.get(type(obj))
    if other and other.objects.filter(name=obj.name).exists():
        raise ValidationError(
            {"name": [f"a {other._meta.verbose_name} is already named {obj.name!r}"]}
        )


@transaction.atomic
def object_save(obj: Model) -> Model:
    """Validate and save one address, service, group, rule set or device."""
    obj.full_clean()
    _check_cross_kind_name(obj)
    if isinstance(obj, RuleSet):
        guard_ruleset_save(obj)
    obj.save()
    revisions_touch(objects=[obj])
    return obj


@transaction.atomic
def address_group_set_members(
    *, group: AddressGroup, members: Sequence[str], index: NameIndex | None = None
) -> MemberDiff:
    """Replace a group's members (address names, group names, literals); refuses cycles.
    Writes only the difference (rules.services.group_members)."""
    return group_members_set(group=group, members=members, index=index)


@transaction.atomic
def service_group_set_members(
    *, group: ServiceGroup, members: Sequence[str], index: NameIndex | None = None
) -> MemberDiff:
    """Replace a group's members (service names, service group names); refuses cycles."""
    return group_members_set(group=group, members=members, index=index)


def object_users(obj: Model) -> list[str]:
    """Everything that uses an object, transitively, as readable strings with the path
    (empty: safe to delete); see rules.where_used."""
    return [str(use) for use in where_used(obj)]


class ObjectInUse(ValidationError):
    """Raised by `object_delete` for an object something still refers to (the API answers 409)."""


@transaction.atomic
def object_delete(obj: Model) -> None:
    """Delete an object, refusing (naming the users) while anything still refers to it."""
    uses = where_used(obj)
    if uses:
        raise ObjectInUse({"non_field_errors": [in_use_message(obj, uses)]})
    ruleset_id = getattr(obj, "ruleset_id", None)  # a NAT rule or rule: its set has changed
    obj.delete()
    if ruleset_id is not None:
        revisions_touch(rulesets=[ruleset_id])
