"""Addresses, services, their groups and zones as the object pages list them."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, F, Func, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    NatRule,
    Rule,
    Service,
    ServiceGroup,
    ServiceGroupMember,
    Zone,
)
from rules.selectors import group_member_rows, member_of_row

MEMBER_PREVIEW = 20  # members a list row shows before "and N more"

# kind (the URL slug) → (model, page title, noun)
OBJECT_KINDS = {
    "addresses": (AddressObject, "Addresses", "address"),
    "address-groups": (AddressGroup, "Address groups", "address group"),
    "services": (Service, "Services", "service"),
    "service-groups": (ServiceGroup, "Service groups", "service group"),
    "zones": (Zone, "Zones", "zone"),
}


def object_list(kind: str, q: str = "") -> QuerySet:
    """Objects of one kind with a cheap "used by N" count (the full where-used is per object)."""
    model = OBJECT_KINDS[kind][0]
    if kind == "zones":
        return _zones(q)
    qs = model.objects.all()
    if kind in ("address-groups", "service-groups"):
        member_model = AddressGroupMember if kind == "address-groups" else ServiceGroupMember
        qs = qs.annotate(member_count=_member_count(member_model))
    qs = qs.annotate(
        rule_use_count=Count("rule_uses", distinct=True),
        group_use_count=Count(
            "group_memberships" if kind in ("addresses", "services") else "parent_memberships",
            distinct=True,
        ),
    )
    if q:
        cond = Q(name__icontains=q) | Q(description__icontains=q)
        if kind == "addresses":
            cond |= Q(value__icontains=q)
        qs = qs.filter(cond)
    return qs.order_by("name")


def _zones(q: str) -> QuerySet:
    """Zones with the count of rules and NAT rules naming them (by name, either side)."""
    counts = [
        Coalesce(
            Subquery(
                model.objects.filter(Q(in_zone=OuterRef("name")) | Q(out_zone=OuterRef("name")))
                .order_by()
                .annotate(n=Func(F("pk"), function="COUNT"))
                .values("n"),
                output_field=IntegerField(),
            ),
            0,
        )
        for model in (Rule, NatRule)
    ]
    qs = Zone.objects.annotate(rule_use_count=counts[0] + counts[1])
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(description__icontains=q))
    return qs.order_by("name")


def _member_count(member_model: type) -> Coalesce:
    """COUNT of a group's members as a subquery (a join would multiply the other counts)."""
    sub = (
        member_model.objects.filter(group=OuterRef("pk"))
        .order_by()
        .values("group")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(sub, output_field=IntegerField()), 0)


def with_member_preview(groups: Iterable) -> list:
    """The groups of one list page, each with `member_preview`: its first members by name
    (a query per group on the page, whatever the groups' sizes)."""
    out = list(groups)
    for group in out:
        group.member_preview = [
            member_of_row(r)[0] for r in group_member_rows(group)[:MEMBER_PREVIEW]
        ]
    return out
