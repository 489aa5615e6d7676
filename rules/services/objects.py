"""Writes of named objects (addresses, services, their groups, rule sets, devices and device
groups as policy targets): validate, save, set group members, delete only when unused."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model

from core.audit.services import record_objects
from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    RuleSet,
    Service,
    ServiceGroup,
    ServiceGroupMember,
)
from rules.revisions.capture import revisions_touch
from rules.revisions.review import guard_ruleset_save
from rules.services.names import NameIndex, group_reaches
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


def _set_members(
    group: Model, members: Sequence[str], resolve, member_model: type[Model], link
) -> None:
    """Replace a group's member rows; `resolve` turns a name into an object, a subgroup or a
    literal, `link` gives the member row's fields for a non-group target. Refuses cycles."""
    rows, errors = [], []
    for i, ref in enumerate(members):
        try:
            target = resolve(ref)
        except ValueError as exc:
            errors.append(f"members[{i}]: {exc}")
            continue
        if isinstance(target, type(group)):
            if target.pk == group.pk or group_reaches(member_model, target.pk, group.pk):
                errors.append(
                    f"members[{i}]: {ref!r} contains {group.name!r}: a group cannot contain itself"
                )
                continue
            rows.append(member_model(group=group, index=i, subgroup=target))
        else:
            rows.append(member_model(group=group, index=i, **link(target)))
    if errors:
        raise ValidationError({"members": errors})
    group.members.all().delete()
    member_model.objects.bulk_create(rows)
    record_objects("create", rows)
    revisions_touch(objects=[group])


@transaction.atomic
def address_group_set_members(
    *, group: AddressGroup, members: Sequence[str], index: NameIndex | None = None
) -> None:
    """Replace a group's members (address names, group names, literals); refuses cycles."""
    index = index or NameIndex.load()
    _set_members(
        group,
        members,
        index.address_ref,
        AddressGroupMember,
        lambda t: {"address": t} if isinstance(t, AddressObject) else {"literal": t},
    )


@transaction.atomic
def service_group_set_members(
    *, group: ServiceGroup, members: Sequence[str], index: NameIndex | None = None
) -> None:
    """Replace a group's members (service names, service group names); refuses cycles."""
    index = index or NameIndex.load()
    _set_members(group, members, index.service_ref, ServiceGroupMember, lambda t: {"service": t})


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
