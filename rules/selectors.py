"""Reads of the policy model. `policy_dict` is the bridge to the compiler and to export:
it returns the database as the policy document of POLICY-FORMAT.md (plain dicts), so the
database, YAML files and CI all go through the same parser and compiler.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Func, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery

from compiler import values
from rules.choices import Side
from rules.document_form import RULE_COLUMNS, nat_dict, rule_dict
from rules.member_sets import member_set_refs, stored_member_keys
from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    Device,
    DeviceGroup,
    NatRule,
    Rule,
    RuleAddress,
    RuleService,
    RuleSet,
    Service,
    ServiceGroup,
    ServiceGroupMember,
    Zone,
)


def _described(d: dict, obj) -> dict:
    if getattr(obj, "description", ""):
        d["description"] = obj.description
    return d


def rules_by_ruleset(ruleset_ids: list[int]) -> dict[int, list[dict]]:
    """Every rule of these rule sets in document form, in order, from three queries."""
    refs: dict[int, dict[str, list[str]]] = {}
    addresses = (
        RuleAddress.objects.filter(rule__ruleset_id__in=ruleset_ids)
        .order_by("rule_id", "side", "index", "id")
        .values_list("rule_id", "side", "address__name", "group__name", "literal")
    )
    for rule_id, side, address, group, literal in addresses.iterator(chunk_size=5000):
        key = "sources" if side == Side.SOURCE else "destinations"
        refs.setdefault(rule_id, {}).setdefault(key, []).append(address or group or literal)
    services = (
        RuleService.objects.filter(rule__ruleset_id__in=ruleset_ids)
        .order_by("rule_id", "index", "id")
        .values_list("rule_id", "service__name", "group__name")
    )
    for rule_id, service, group in services.iterator(chunk_size=5000):
        refs.setdefault(rule_id, {}).setdefault("services", []).append(service or group)
    out: dict[int, list[dict]] = {pk: [] for pk in ruleset_ids}
    rows = Rule.objects.filter(ruleset_id__in=ruleset_ids).order_by("ruleset_id", "position", "id")
    for row in rows.values(*RULE_COLUMNS).iterator(chunk_size=5000):
        out[row["ruleset_id"]].append(rule_dict(row, refs.get(row["id"], {})))
    return out


def rules_queryset():
    """Rules with their references: a page of rules costs three queries whatever its size
    (links joined to their targets, rather than one prefetch per target kind)."""
    return (
        Rule.objects.select_related("ruleset")
        .order_by("position", "id")
        .prefetch_related(
            Prefetch("addresses", queryset=RuleAddress.objects.select_related("address", "group")),
            Prefetch(
                "service_refs", queryset=RuleService.objects.select_related("service", "group")
            ),
        )
    )


def ruleset_dict(ruleset: RuleSet, rules: list[dict] | None = None) -> dict:
    d = _described({"name": ruleset.name}, ruleset)
    d["rules"] = rules if rules is not None else rules_by_ruleset([ruleset.pk])[ruleset.pk]
    nat = [nat_dict(n) for n in ruleset.nat_rules.all()]
    if nat:
        d["nat"] = nat
    if ruleset.assertions:
        d["assertions"] = ruleset.assertions
    return d


def device_dict(device) -> dict:
    d = _described(
        {"name": device.name, "address": device.address, "agent_port": device.agent_port}, device
    )
    d["groups"] = [link.group.name for link in device.group_links.all()]
    d["rulesets"] = [link.ruleset.name for link in device.ruleset_links.all()]
    d["default_policy"] = device.default_policy
    d["management_sources"] = list(device.management_sources)
    d["stateful"] = device.stateful
    d["allow_loopback"] = device.allow_loopback
    if device.probes:
        d["probes"] = list(device.probes)
    return d


def device_group_dict(group) -> dict:
    d = _described(
        {"name": group.name, "rulesets": [link.ruleset.name for link in group.ruleset_links.all()]},
        group,
    )
    if group.probes:
        d["probes"] = list(group.probes)
    return d


def member_refs(
    model: type, group_ids: Iterable[int] | None = None, *, skip: Iterable[int] = ()
) -> dict[int, list[str]]:
    """Group id → its members by name, in order, from plain rows (model instances cost
    ~10 µs a member: a second for a 100,000-member group). Names come from two small
    lookups rather than a join per member row. Groups in `skip` are not read."""
    is_address = model is AddressGroupMember
    target = "address_id" if is_address else "service_id"
    qs = model.objects.order_by("group_id", "index", "id")
    if group_ids is not None:
        qs = qs.filter(group_id__in=list(group_ids))
    skip = list(skip)
    if skip:
        qs = qs.exclude(group_id__in=skip)
    linked = qs.exclude(**{f"{target}__isnull": True}).values(target)
    nested = qs.exclude(subgroup_id__isnull=True).values("subgroup_id")
    objects = (AddressObject if is_address else Service).objects
    groups = (AddressGroup if is_address else ServiceGroup).objects
    object_names = dict(objects.filter(pk__in=linked.order_by()).values_list("pk", "name"))
    group_names = dict(groups.filter(pk__in=nested.order_by()).values_list("pk", "name"))
    extra = ("literal",) if is_address else ()
    out: dict[int, list[str]] = {}
    for group_id, obj, subgroup, *literal in qs.values_list(
        "group_id", target, "subgroup_id", *extra
    ).iterator(chunk_size=10000):
        name = (
            object_names[obj]
            if obj is not None
            else group_names[subgroup]
            if subgroup is not None
            else literal[0]
        )
        out.setdefault(group_id, []).append(name)
    return out


def group_member_rows(group) -> QuerySet:
    """A group's members as (object name, subgroup name[, literal]) rows, in order: page it
    (a page costs one query), or read it whole without building a model per member."""
    model = AddressGroupMember if isinstance(group, AddressGroup) else ServiceGroupMember
    target = "address__name" if model is AddressGroupMember else "service__name"
    extra = ("literal",) if model is AddressGroupMember else ()
    return (
        model.objects.filter(group_id=group.pk)
        .order_by("index", "id")
        .values_list(target, "subgroup__name", *extra)
    )


def member_of_row(row: tuple) -> tuple[str, str]:
    """A `group_member_rows` row as (name, kind): kind is object, group or literal."""
    name, subgroup, *literal = row
    if name:
        return name, "object"
    if subgroup:
        return subgroup, "group"
    return literal[0], "literal"


def _row_count(member_model: type) -> Subquery:
    """A group's member row count, counted on its index (correlated: no GROUP BY)."""
    return Subquery(
        member_model.objects.filter(group_id=OuterRef("pk"))
        .order_by()
        .annotate(n=Func(template="COUNT(*)", output_field=IntegerField()))
        .values("n")[:1],
        output_field=IntegerField(),
    )


def _kept_members(
    group_model: type, member_model: type, chosen: list[dict]
) -> dict[int, list[str]]:
    """Members by name of the chosen groups whose member set (kept by
    rules.services.group_members) matches their rows: one row each, not one per member."""
    keyed = {}
    for g in chosen:
        keys = stored_member_keys(g["member_set"], g["rows"])
        if keys is not None:
            keyed[g["id"]] = (keys, member_set_refs(g["member_set"]))
    refs = set().union(*(r for _, r in keyed.values()))
    objects = (AddressObject if member_model is AddressGroupMember else Service).objects
    names = {
        ("o", pk): name
        for pk, name in objects.filter(pk__in=[v for t, v in refs if t == "o"]).values_list(
            "pk", "name"
        )
    } | {
        ("g", pk): name
        for pk, name in group_model.objects.filter(
            pk__in=[v for t, v in refs if t == "g"]
        ).values_list("pk", "name")
    }
    if refs - names.keys():  # a member that is gone: read that group's rows instead
        return {}
    return {
        gid: [k if type(k) is str else names[k] for k in keys] if own else list(keys)
        for gid, (keys, own) in keyed.items()
    }


def group_member_names(group) -> list[str]:
    """One group's members by name, in order (from its member set when it has one)."""
    if isinstance(group, AddressGroup):
        found = _group_dicts(AddressGroup, AddressGroupMember, {group.pk})
    else:
        found = _group_dicts(ServiceGroup, ServiceGroupMember, {group.pk})
    return found[0]["members"] if found else []


def _group_dicts(group_model: type, member_model: type, group_ids: set[int] | None) -> list[dict]:
    groups = group_model.objects.order_by("name")
    if group_ids is not None:
        groups = groups.filter(pk__in=group_ids)
    chosen = list(
        groups.annotate(rows=_row_count(member_model)).values(
            "id", "name", "description", "member_set", "rows"
        )
    )
    members = _kept_members(group_model, member_model, chosen)
    members |= member_refs(member_model, group_ids, skip=members)
    out = []
    for g in chosen:
        d = {"name": g["name"], "members": members.get(g["id"], [])}
        if g["description"]:
            d["description"] = g["description"]
        out.append(d)
    return out


class _Wanted:
    """The objects of one kind that rule sets refer to, transitively: names referred to
    directly and the ids of the groups reached (one query per nesting level, on ids, so a
    group of 100,000 literals or objects costs no more than a small one)."""

    def __init__(self, group_model: type, member_model: type, names: set[str]) -> None:
        self.names = names
        frontier = set(group_model.objects.filter(name__in=names).values_list("pk", flat=True))
        self.group_ids: set[int] = set()
        while frontier:
            self.group_ids |= frontier
            frontier = (
                set(
                    member_model.objects.filter(group_id__in=frontier, subgroup__isnull=False)
                    .order_by()  # DISTINCT on the subgroup alone, not on the row order
                    .values_list("subgroup_id", flat=True)
                    .distinct()
                )
                - self.group_ids
            )

    def objects(self, model: type, link: str):
        """The objects named directly or members of a reached group."""
        return model.objects.filter(
            Q(name__in=self.names) | Q(**{f"{link}__group_id__in": self.group_ids})
        ).distinct()


def _referenced(rulesets: list[dict]) -> tuple[_Wanted, _Wanted]:
    """The addresses and services rule sets in document form refer to, transitively."""
    addresses: set[str] = set()
    services: set[str] = set()

    def names(refs) -> set[str]:
        return {r for r in refs or () if isinstance(r, str) and not values.is_literal(r)}

    for rs in rulesets:
        for item in [*rs.get("rules", []), *rs.get("nat", [])]:
            addresses |= names(item.get("sources")) | names(item.get("destinations"))
            services |= names(item.get("services"))
    return (
        _Wanted(AddressGroup, AddressGroupMember, addresses),
        _Wanted(ServiceGroup, ServiceGroupMember, services),
    )


def policy_dict(
    *,
    devices: Iterable | None = None,
    rulesets: Iterable | None = None,
    referenced_objects: bool = False,
) -> dict:
    """The policy document for everything, or narrowed to some devices and/or rule sets.

    Objects are complete (references must resolve; members are read as plain rows), or with
    `referenced_objects` only those the chosen rule sets refer to, transitively: what a
    revision snapshot keeps, so a write never reads a large group it does not use. Rule
    sets are those named, plus those the chosen devices use; devices and groups are those
    chosen.
    """
    device_qs = Device.objects.prefetch_related("group_links__group", "ruleset_links__ruleset")
    group_qs = DeviceGroup.objects.prefetch_related("ruleset_links__ruleset")
    ruleset_qs = RuleSet.objects.prefetch_related(
        Prefetch("nat_rules", queryset=NatRule.objects.order_by("position", "id")),
    )
    if devices is not None or rulesets is not None:
        device_ids = [getattr(d, "pk", d) for d in (devices or [])]
        ruleset_ids = [getattr(r, "pk", r) for r in (rulesets or [])]
        device_qs = device_qs.filter(pk__in=device_ids)
        group_qs = group_qs.filter(device_links__device_id__in=device_ids).distinct()
        ruleset_qs = ruleset_qs.filter(
            Q(pk__in=ruleset_ids)
            | Q(device_links__device_id__in=device_ids)
            | Q(device_group_links__group__device_links__device_id__in=device_ids)
        ).distinct()
    chosen = list(ruleset_qs.order_by("name"))
    rules = rules_by_ruleset([rs.pk for rs in chosen])
    ruleset_dicts = [ruleset_dict(rs, rules[rs.pk]) for rs in chosen]
    addresses, services = AddressObject.objects.all(), Service.objects.all()
    address_groups = service_groups = None
    zones = Zone.objects.all()
    if referenced_objects:
        zones = zones.filter(name__in=_referenced_zones(ruleset_dicts))
        want_a, want_s = _referenced(ruleset_dicts)
        addresses = want_a.objects(AddressObject, "group_memberships")
        services = want_s.objects(Service, "group_memberships")
        address_groups, service_groups = want_a.group_ids, want_s.group_ids
    zone_dicts = [zone_dict(z) for z in zones.order_by("name")]
    return {
        "version": 1,
        "addresses": [
            _described({"name": o.name, "value": o.value}, o) for o in addresses.order_by("name")
        ],
        "address_groups": _group_dicts(AddressGroup, AddressGroupMember, address_groups),
        "services": [_service_dict(s) for s in services.order_by("name")],
        "service_groups": _group_dicts(ServiceGroup, ServiceGroupMember, service_groups),
        # only when there are zones: documents without them read as they always did
        **({"zones": zone_dicts} if zone_dicts else {}),
        "rulesets": ruleset_dicts,
        "device_groups": [device_group_dict(g) for g in group_qs.order_by("name")],
        "devices": [device_dict(d) for d in device_qs.order_by("name")],
    }


def _referenced_zones(rulesets: list[dict]) -> set[str]:
    """The zones rule sets in document form use."""
    return {
        item[key]
        for rs in rulesets
        for item in [*rs.get("rules", []), *rs.get("nat", [])]
        for key in ("in_zone", "out_zone")
        if item.get(key)
    }


def zone_dict(zone: Zone) -> dict:
    d: dict = {"name": zone.name, "interfaces": list(zone.interfaces)}
    if zone.networks:
        d["networks"] = list(zone.networks)
    return _described(d, zone)


def _service_dict(service: Service) -> dict:
    d = _described({"name": service.name, "protocol": service.protocol}, service)
    if service.ports:
        d["ports"] = service.ports
    if service.source_ports:
        d["source_ports"] = service.source_ports
    if service.icmp_type:
        d["icmp_type"] = service.icmp_type
    return d
