"""Writes of zones: validate and save (a rename follows into the rules and NAT rules that
name the zone), delete only while no rule or NAT rule uses it.

Rules hold a zone by name (rules.models.zones says why), so these services are what keeps
those names true.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from rules.models import NatRule, Rule, Zone
from rules.revisions.capture import revisions_touch
from rules.services.objects import ObjectInUse


def _using(model: type[Rule] | type[NatRule], name: str):
    return model.objects.filter(Q(in_zone=name) | Q(out_zone=name))


def zone_users(zone: Zone) -> list[str]:
    """The rules and NAT rules that name the zone: "rule web#3 (<uuid>)", "NAT rule web#1"."""
    out = []
    for model, label in ((Rule, "rule"), (NatRule, "NAT rule")):
        rows = (
            _using(model, zone.name)
            .order_by("ruleset__name", "position", "id")
            .values_list("ruleset__name", "position", "uuid")
        )
        out += [f"{label} {rs}#{pos} ({uuid})" for rs, pos, uuid in rows]
    return out


@transaction.atomic
def zone_save(zone: Zone) -> Zone:
    """Validate and save a zone; renaming it renames it in every rule and NAT rule, and the
    rule sets using it get a new revision (their content changed)."""
    zone.full_clean()
    old = None
    if zone.pk is not None:
        old = Zone.objects.filter(pk=zone.pk).values_list("name", flat=True).first()
    zone.save()
    touched: set[int] = set()
    for model in (Rule, NatRule):
        for key in ("in_zone", "out_zone"):
            rows = model.objects.filter(**{f"{key}__in": {zone.name, old or zone.name}})
            touched |= set(rows.values_list("ruleset_id", flat=True))
            if old is not None and old != zone.name:
                rows.filter(**{key: old}).update(**{key: zone.name})
    # a zone is part of the content of every rule set that uses it (its revisions snapshot
    # it): a changed interface list is a change to review under four-eyes like any other
    revisions_touch(rulesets=touched)
    return zone


@transaction.atomic
def zone_delete(zone: Zone) -> None:
    """Delete a zone, refusing (naming the rules) while any rule or NAT rule uses it."""
    users = zone_users(zone)
    if users:
        shown = ", ".join(users[:20]) + (f" and {len(users) - 20} more" if len(users) > 20 else "")
        raise ObjectInUse({"non_field_errors": [f"{zone} is still in use by: {shown}"]})
    zone.delete()
