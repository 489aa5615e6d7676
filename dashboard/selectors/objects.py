"""Addresses, services and their groups as the object pages list them."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    Service,
    ServiceGroup,
    ServiceGroupMember,
)
from rules.selectors import group_member_rows, member_of_row

MEMBER_PREVIEW = 20  # members a list row shows before "and N more"

# kind (the URL slug) → (model, page title, noun)
OBJECT_KINDS = {
    "addresses": (AddressObject, "Addresses", "address"),
    "address-groups": (AddressGroup, "Address groups", "address group"),
    "services": (Service, "Services", "service"),
    "service-groups": (ServiceGroup, "Service groups", "service group"),
}


def object_list(kind: str, q: str = "") -> QuerySet:
    """Objects of one kind with a cheap "used by N" count (the full where-used is per object)."""
    model = OBJECT_KINDS[kind][0]
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
