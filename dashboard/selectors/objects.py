"""Addresses, services and their groups as the object pages list them."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from rules.models import AddressGroup, AddressObject, Service, ServiceGroup

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
        qs = qs.prefetch_related(
            "members__address" if kind == "address-groups" else "members__service",
            "members__subgroup",
        )
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
