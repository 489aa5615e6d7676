"""Import step for the named objects: addresses, services and their groups (nested groups
before the groups containing them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ValidationError

from rules.importer.plan import errors_of
from rules.importer.state import ImportRun
from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    Service,
    ServiceGroup,
    ServiceGroupMember,
    Zone,
)
from rules.selectors import member_refs
from rules.services import NameIndex, address_group_set_members, service_group_set_members


def _topological(items: Iterable, members: Callable[[Any], Iterable[str]]) -> list:
    """Groups ordered so that nested groups come before the groups containing them."""
    by_name = {i.name: i for i in items}
    out, seen = [], set()

    def visit(name: str) -> None:
        if name in seen or name not in by_name:
            return
        seen.add(name)
        for m in members(by_name[name]):
            visit(m)
        out.append(by_name[name])

    for name in by_name:
        visit(name)
    return out


def _groups(run: ImportRun, model, kind: str, entries: tuple, set_members: Callable) -> None:
    rows = run.upsert(model, kind, entries, lambda g: {"description": g.description})
    # plain rows, not a model per member: a 100,000-member group is read in one pass
    member_model = AddressGroupMember if model is AddressGroup else ServiceGroupMember
    refs = member_refs(member_model)
    current = {name: refs.get(pk, []) for pk, name in model.objects.values_list("pk", "name")}
    index = NameIndex.load()
    for g in _topological(entries, lambda g: g.members):
        if current.get(g.name) == list(g.members):
            continue
        try:
            set_members(group=rows[g.name], members=list(g.members), index=index)
        except ValidationError as exc:
            run.errors += errors_of(exc, f"{kind}[{g.name}]")
            continue
        if g.name not in run.plan.created[kind] and g.name not in run.plan.updated[kind]:
            run.plan.updated[kind].append(g.name)
    run.check()


def import_objects(run: ImportRun) -> None:
    """Addresses, address groups, services, service groups, zones: in that (dependency)
    order."""
    doc = run.doc
    run.upsert(
        AddressObject,
        "addresses",
        doc.addresses,
        lambda a: {"value": a.value, "description": a.description},
    )
    _groups(run, AddressGroup, "address_groups", doc.address_groups, address_group_set_members)
    run.upsert(
        Service,
        "services",
        doc.services,
        lambda s: {
            "protocol": s.protocol,
            "ports": list(s.ports),
            "source_ports": list(s.source_ports),
            "icmp_type": "" if s.icmp_type is None else str(s.icmp_type),
            "description": s.description,
        },
    )
    _groups(run, ServiceGroup, "service_groups", doc.service_groups, service_group_set_members)
    run.upsert(
        Zone,
        "zones",
        doc.zones,
        lambda z: {
            "interfaces": list(z.interfaces),
            "networks": list(z.networks),
            "description": z.description,
        },
    )
