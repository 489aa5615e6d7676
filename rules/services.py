"""Writes to the policy model. Views, serializers, forms and tasks call these; nothing else
changes policy rows, so every path (API, admin, UI, import) gets the same validation.

References (to addresses, groups, services) are given as names, exactly as in the policy
document; a string that reads as an address is a literal.
"""

from __future__ import annotations

import uuid as uuid_lib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import connection, connections, models, router, transaction
from django.db.models import CASCADE, Max, Model
from django.utils import timezone

from compiler import values
from core.audit.services import raw_state, record_objects
from core.bulk_rows import insert_rows
from rules import revisions
from rules.choices import Side
from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    NatRule,
    Rule,
    RuleAddress,
    RuleService,
    RuleSet,
    Service,
    ServiceGroup,
    ServiceGroupMember,
)

RULE_SCALAR_FIELDS = (
    "enabled",
    "chain",
    "action",
    "sources_negate",
    "destinations_negate",
    "protocol",
    "dports",
    "sports",
    "icmp_type",
    "in_interface",
    "out_interface",
    "states",
    "log",
    "log_prefix",
    "rate_limit",
    "burst",
    "comment",
    "expires_at",
)


# --- name resolution --------------------------------------------------------------------


@dataclass
class NameIndex:
    """Name → object maps for one validation pass (one query per kind, not per reference)."""

    addresses: dict[str, AddressObject] = field(default_factory=dict)
    address_groups: dict[str, AddressGroup] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    service_groups: dict[str, ServiceGroup] = field(default_factory=dict)
    _families: dict[int, set[int]] = field(default_factory=dict)
    _value_families: dict[str, set[int]] = field(default_factory=dict)  # literal or object value

    @classmethod
    def load(cls) -> NameIndex:
        return cls(
            addresses={o.name: o for o in AddressObject.objects.all()},
            address_groups={o.name: o for o in AddressGroup.objects.all()},
            services={o.name: o for o in Service.objects.all()},
            service_groups={o.name: o for o in ServiceGroup.objects.all()},
        )

    def address_ref(self, ref: str) -> AddressObject | AddressGroup | str:
        """An address object, an address group, or the literal itself; ValueError if unknown."""
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError("an address name or literal is required")
        obj, grp = self.addresses.get(ref), self.address_groups.get(ref)
        if obj and grp:
            raise ValueError(f"{ref!r} is both an address and an address group")
        if obj or grp:  # names never read as addresses (validate_name), so no literal is shadowed
            return obj or grp
        if ref in self._value_families or values.is_literal(ref):
            return ref
        raise ValueError(f"unknown address or address group {ref!r}")

    def _value_family(self, value: str) -> set[int]:
        """Parsing is the costly part of checking thousands of rules: once per distinct value."""
        found = self._value_families.get(value)
        if found is None:
            found = self._value_families[value] = {values.parse_address(value).version}
        return found

    def service_ref(self, ref: str) -> Service | ServiceGroup:
        svc, grp = self.services.get(ref), self.service_groups.get(ref)
        if svc and grp:
            raise ValueError(f"{ref!r} is both a service and a service group")
        if not (svc or grp):
            raise ValueError(f"unknown service or service group {ref!r}")
        return svc or grp

    def families(self, target: AddressObject | AddressGroup | str) -> set[int]:
        """IP versions an address reference can match (a group: all of its members')."""
        if isinstance(target, str):
            return self._value_family(target)
        if isinstance(target, AddressObject):
            return self._value_family(target.value)
        if target.pk not in self._families:
            self._families[target.pk] = set()  # guards against cycles while computing
            found: set[int] = set()
            for m in target.members.select_related("address", "subgroup"):
                found |= self.families(m.address or m.subgroup or m.literal)
            self._families[target.pk] = found
        return self._families[target.pk]


def _group_reaches(member_model: type[Model], start_pk: int, target_pk: int) -> bool:
    """Whether group `start_pk` contains group `target_pk`, directly or through subgroups."""
    seen, stack = set(), [start_pk]
    while stack:
        pk = stack.pop()
        if pk == target_pk:
            return True
        if pk in seen:
            continue
        seen.add(pk)
        stack.extend(
            member_model.objects.filter(group_id=pk, subgroup__isnull=False).values_list(
                "subgroup_id", flat=True
            )
        )
    return False


# --- objects -----------------------------------------------------------------------------


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
        revisions.guard_ruleset_save(obj)
    obj.save()
    revisions.revisions_touch(objects=[obj])
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
            if target.pk == group.pk or _group_reaches(member_model, target.pk, group.pk):
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
    revisions.revisions_touch(objects=[group])


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
    """Everything that refers to an object, as readable strings (empty: safe to delete)."""
    users: list[str] = []
    if isinstance(obj, (AddressObject, AddressGroup)):
        users += [
            f"address group {m.group.name}"
            for m in (
                obj.group_memberships if isinstance(obj, AddressObject) else obj.parent_memberships
            ).select_related("group")
        ]
        users += [
            f"rule {ra.rule.ruleset.name}#{ra.rule.position} ({ra.rule.uuid})"
            for ra in obj.rule_uses.select_related("rule__ruleset")
        ]
        for nat in NatRule.objects.select_related("ruleset"):
            if obj.name in (nat.sources or []) or obj.name in (nat.destinations or []):
                users.append(f"NAT rule {nat.ruleset.name}#{nat.position}")
        from rules.models import Device

        users += [
            f"device {d.name} (management sources)"
            for d in Device.objects.all()
            if obj.name in (d.management_sources or [])
        ]
    elif isinstance(obj, (Service, ServiceGroup)):
        users += [
            f"service group {m.group.name}"
            for m in (
                obj.group_memberships if isinstance(obj, Service) else obj.parent_memberships
            ).select_related("group")
        ]
        users += [
            f"rule {rs.rule.ruleset.name}#{rs.rule.position} ({rs.rule.uuid})"
            for rs in obj.rule_uses.select_related("rule__ruleset")
        ]
    elif isinstance(obj, RuleSet):
        users += [
            f"device {link.device.name}" for link in obj.device_links.select_related("device")
        ]
        users += [
            f"device group {link.group.name}"
            for link in obj.device_group_links.select_related("group")
        ]
    elif obj._meta.label == "rules.DeviceGroup":
        users += [
            f"device {link.device.name}" for link in obj.device_links.select_related("device")
        ]
    return sorted(set(users))


class ObjectInUse(ValidationError):
    """Raised by `object_delete` for an object something still refers to (the API answers 409)."""


@transaction.atomic
def object_delete(obj: Model) -> None:
    """Delete an object, refusing (naming the users) while anything still refers to it."""
    users = object_users(obj)
    if users:
        shown = ", ".join(users[:20]) + (f" and {len(users) - 20} more" if len(users) > 20 else "")
        raise ObjectInUse({"non_field_errors": [f"{obj} is still in use by: {shown}"]})
    ruleset_id = getattr(obj, "ruleset_id", None)  # a NAT rule or rule: its set has changed
    obj.delete()
    if ruleset_id is not None:
        revisions.revisions_touch(rulesets=[ruleset_id])


# --- rules -------------------------------------------------------------------------------


@dataclass
class RuleRefs:
    sources: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)


def resolve_rule_refs(
    rule: Rule, refs: RuleRefs, index: NameIndex
) -> tuple[list[RuleAddress], list[RuleService]]:
    """Resolve a rule's names into link rows (unsaved); field-keyed ValidationError on problems."""
    errors: dict[str, list[str]] = {}
    addresses: list[RuleAddress] = []
    fams: dict[str, set[int]] = {}
    for side, key in ((Side.SOURCE, "sources"), (Side.DESTINATION, "destinations")):
        side_fams: set[int] = set()
        refs_list = getattr(refs, key)
        if not isinstance(refs_list, list):
            errors[key] = ["must be a list of address names or literals"]
            continue
        for i, ref in enumerate(refs_list):
            try:
                target = index.address_ref(ref)
                side_fams |= index.families(target)
            except ValueError as exc:
                errors.setdefault(key, []).append(f"[{i}] {exc}")
                continue
            link = RuleAddress(rule=rule, side=side, index=i)
            if isinstance(target, AddressObject):
                link.address = target
            elif isinstance(target, AddressGroup):
                link.group = target
            else:
                link.literal = target
            addresses.append(link)
        fams[key] = side_fams
    src, dst = fams.get("sources", set()), fams.get("destinations", set())
    if src and dst and not (src & dst):
        errors.setdefault("destinations", []).append(
            f"sources are IPv{'/'.join(map(str, sorted(src)))} only but destinations are "
            f"IPv{'/'.join(map(str, sorted(dst)))} only: no packet can match"
        )
    services: list[RuleService] = []
    if not isinstance(refs.services, list):
        errors["services"] = ["must be a list of service names"]
    else:
        for i, ref in enumerate(refs.services):
            try:
                target = index.service_ref(ref)
            except ValueError as exc:
                errors.setdefault("services", []).append(f"[{i}] {exc}")
                continue
            if isinstance(target, Service):
                services.append(RuleService(rule=rule, index=i, service=target))
            else:
                services.append(RuleService(rule=rule, index=i, group=target))
    if refs.services and (rule.protocol or rule.dports or rule.sports):
        errors.setdefault("services", []).append(
            "give either services or a literal protocol/ports, not both"
        )
    if errors:
        raise ValidationError(errors)
    return addresses, services


def rule_current_refs(rule: Rule) -> RuleRefs:
    """A saved rule's references as names (uses prefetched links when present)."""
    cache = getattr(rule, "_prefetched_objects_cache", {})
    addresses = (
        rule.addresses.all()
        if "addresses" in cache
        else rule.addresses.select_related("address", "group")
    )
    services = (
        rule.service_refs.all()
        if "service_refs" in cache
        else rule.service_refs.select_related("service", "group")
    )
    current = RuleRefs()
    for link in addresses:
        (current.sources if link.side == Side.SOURCE else current.destinations).append(link.ref)
    current.services = [link.ref for link in services]
    return current


def rule_build(
    *,
    ruleset: RuleSet,
    data: dict,
    index: NameIndex,
    rule: Rule | None = None,
    current: RuleRefs | None = None,
):
    """Validate one rule's data (scalars + references) without saving; returns (rule, links).

    `current` (the saved rule's references) spares a query per rule in bulk updates; it is
    loaded only when `data` leaves some reference list out.
    """
    rule = rule or Rule(ruleset=ruleset)
    unknown = (
        set(data)
        - set(RULE_SCALAR_FIELDS)
        - {"sources", "destinations", "services", "position", "uuid", "id"}
    )
    if unknown:
        raise ValidationError({k: ["unknown field"] for k in sorted(unknown)})
    for name in RULE_SCALAR_FIELDS:
        if name in data:
            setattr(rule, name, data[name])
    errors: dict[str, list[str]] = {}
    given_uuid = data.get("uuid") or data.get("id")
    if given_uuid:
        try:
            rule.uuid = uuid_lib.UUID(str(given_uuid))
        except ValueError:
            errors["uuid"] = [f"{given_uuid!r} is not a UUID"]
    try:
        rule.full_clean(exclude=["ruleset", "position", "uuid"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if current is None:
        needs_current = rule.pk and not {"sources", "destinations", "services"} <= set(data)
        current = rule_current_refs(rule) if needs_current else RuleRefs()
    refs = RuleRefs(
        sources=data.get("sources", current.sources),
        destinations=data.get("destinations", current.destinations),
        services=data.get("services", current.services),
    )
    links: tuple[list, list] = ([], [])
    try:
        links = resolve_rule_refs(rule, refs, index)
    except ValidationError as exc:
        for k, v in exc.message_dict.items():
            errors.setdefault(k, []).extend(v)
    if errors:
        raise ValidationError(errors)
    return rule, links


def _save_links(
    rules_links: Iterable[tuple[Rule, tuple[list[RuleAddress], list[RuleService]]]],
) -> None:
    addresses, services = [], []
    for rule, (addr_links, svc_links) in rules_links:
        for link in addr_links:
            link.rule = rule
        for link in svc_links:
            link.rule = rule
        addresses += addr_links
        services += svc_links
    _insert_rows(RuleAddress, addresses)
    _insert_rows(RuleService, services)
    revisions.audit_rule_refs(rules_links)


def _insert_rows(model: type[Model], objs: Sequence[Model]) -> None:
    """INSERT new rows in one go (core.bulk_rows); their pks are NOT set.

    Fields get the same pre_save/prep as in bulk_create (auto_now, defaults, JSON
    adaptation), so rows are identical.
    """
    if not objs:
        return
    conn = connections[router.db_for_write(model)]
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    plain = [_is_plain(f) for f in fields]
    insert_rows(
        model,
        fields,
        (
            [
                getattr(obj, f.attname) if p else f.get_db_prep_save(f.pre_save(obj, True), conn)
                for f, p in zip(fields, plain, strict=True)
            ]
            for obj in objs
        ),
    )


_PLAIN_TYPES = (
    models.CharField,
    models.TextField,
    models.BooleanField,
    models.IntegerField,
    models.PositiveIntegerField,
    models.BigIntegerField,
)


def _is_plain(model_field: models.Field) -> bool:
    """A field stored as its (already cleaned) Python value on every backend: no prep needed.

    Skipping Django's per-value prep for these halves the cost of building 10,000 rows.
    """
    if isinstance(model_field, models.ForeignKey):
        target = model_field.target_field
        return _is_plain(target) or isinstance(target, models.AutoField | models.BigAutoField)
    return type(model_field) in _PLAIN_TYPES


def _update_rows(model: type[Model], objs: Sequence[Model], fields: Sequence[str]) -> None:
    """UPDATE many rows with one executemany: Django's bulk_update builds a CASE per field and
    row and takes seconds for a few thousand rows (renumbering a 10,000-rule set)."""
    if not objs:
        return
    conn = connections[router.db_for_write(model)]
    qn = conn.ops.quote_name
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {', '.join(f'{qn(c.column)} = %s' for c in columns)} "
        f"WHERE {qn(meta.pk.column)} = %s"
    )
    params = [
        [c.get_db_prep_save(getattr(obj, c.attname), conn) for c in columns] + [obj.pk]
        for obj in objs
    ]
    with conn.cursor() as cursor:
        cursor.executemany(sql, params)


def _delete_rows(model: type[Model], ids: Sequence[int], field: str = "pk") -> None:
    """DELETE the rows whose `field` is in `ids`, and the rows that cascade from them.

    Django's delete() loads and signals every row (and every link row) one by one; that is
    minutes for thousands of rules. Bulk writes send no signals: the caller records them.
    Falls back to the ORM unless every dependent is a plain cascade without dependents.
    """
    meta = model._meta
    dependents = [rel for rel in meta.related_objects if not rel.many_to_many]
    plain = all(
        rel.on_delete is CASCADE and not rel.related_model._meta.related_objects
        for rel in dependents
    )
    if not plain or (dependents and field != "pk"):
        for chunk in _chunks(ids):
            model.objects.filter(**{f"{field}__in": chunk}).delete()
        return
    qn = connection.ops.quote_name
    column = meta.pk.column if field == "pk" else meta.get_field(field).column
    with connection.cursor() as cursor:
        for chunk in _chunks(ids):
            marks = ", ".join(["%s"] * len(chunk))
            for rel in dependents:
                cursor.execute(
                    f"DELETE FROM {qn(rel.related_model._meta.db_table)} "
                    f"WHERE {qn(rel.field.column)} IN ({marks})",
                    list(chunk),
                )
            cursor.execute(
                f"DELETE FROM {qn(meta.db_table)} WHERE {qn(column)} IN ({marks})", list(chunk)
            )


def _next_position(ruleset: RuleSet) -> int:
    return (ruleset.rules.aggregate(m=Max("position"))["m"] or 0) + 1


@transaction.atomic
@revisions.batched
def rule_create(*, ruleset: RuleSet, data: dict, position: int | None = None) -> Rule:
    """Create a rule at the end (or at `position`, shifting the rules below it down)."""
    rule, links = rule_build(ruleset=ruleset, data=data, index=NameIndex.load())
    if (data.get("uuid") or data.get("id")) and Rule.objects.filter(uuid=rule.uuid).exists():
        raise ValidationError({"uuid": [f"a rule with id {rule.uuid} already exists"]})
    RuleSet.objects.select_for_update().filter(pk=ruleset.pk).first()
    last = _next_position(ruleset)
    rule.position = last
    rule.save()
    _save_links([(rule, links)])
    if position is not None and position != last:
        rule_move(rule=rule, position=position)
        rule.refresh_from_db()
    revisions.revisions_touch(rulesets=[ruleset])
    return rule


@transaction.atomic
@revisions.batched
def rule_update(*, rule: Rule, data: dict) -> Rule:
    rule, links = rule_build(ruleset=rule.ruleset, data=data, index=NameIndex.load(), rule=rule)
    rule.save()
    if {"sources", "destinations", "services"} & set(data):
        rule.addresses.all().delete()
        rule.service_refs.all().delete()
        _save_links([(rule, links)])
    if "position" in data and data["position"] != rule.position:
        rule_move(rule=rule, position=data["position"])
        rule.refresh_from_db()
    revisions.revisions_touch(rulesets=[rule.ruleset_id])
    return rule


@transaction.atomic
def rule_delete(*, rule: Rule) -> None:
    ruleset = rule.ruleset
    rule.delete()
    renumber(ruleset=ruleset)
    revisions.revisions_touch(rulesets=[ruleset])


def renumber(*, ruleset: RuleSet, order: Sequence[int] | None = None) -> None:
    """Give the rule set's rules positions 1..n (in `order` of rule ids when given)."""
    ids = (
        list(order)
        if order is not None
        else list(ruleset.rules.order_by("position", "id").values_list("id", flat=True))
    )
    rules = {r.pk: r for r in Rule.objects.filter(pk__in=ids).only("id", "position")}
    changed, before = [], {}
    for pos, pk in enumerate(ids, start=1):
        if rules[pk].position != pos:
            before[pk] = {"position": rules[pk].position}
            rules[pk].position = pos
            changed.append(rules[pk])
    _update_rows(Rule, changed, ["position"])
    record_objects(
        "update",
        changed,
        before=before,
        fields=["position"],
        name_of=lambda r: f"{ruleset.name} rule {r.pk}",
    )


@transaction.atomic
def rule_move(*, rule: Rule, position: int) -> None:
    """Move a rule to `position` (1-based, clamped), renumbering the others atomically."""
    RuleSet.objects.select_for_update().filter(pk=rule.ruleset_id).first()
    ids = list(
        Rule.objects.filter(ruleset_id=rule.ruleset_id)
        .order_by("position", "id")
        .values_list("id", flat=True)
    )
    if not isinstance(position, int) or position < 1:
        raise ValidationError({"position": ["position must be a whole number from 1"]})
    ids.remove(rule.pk)
    ids.insert(min(position, len(ids) + 1) - 1, rule.pk)
    renumber(ruleset=rule.ruleset, order=ids)
    revisions.revisions_touch(rulesets=[rule.ruleset_id])


@transaction.atomic
def rules_reorder(*, ruleset: RuleSet, order: Sequence[int]) -> None:
    """Set the whole order at once; `order` must list every rule id of the set exactly once."""
    RuleSet.objects.select_for_update().filter(pk=ruleset.pk).first()
    current = set(ruleset.rules.values_list("id", flat=True))
    if len(order) != len(set(order)) or set(order) != current:
        raise ValidationError({"order": ["must list every rule id of this rule set exactly once"]})
    renumber(ruleset=ruleset, order=order)
    revisions.revisions_touch(rulesets=[ruleset])


# --- bulk --------------------------------------------------------------------------------


class BulkError(ValidationError):
    """Every problem of a `rules_bulk` call, per item, nested as the API shows it.

    `errors` looks like {"create": {"17": {"dports": [...]}}, "update": {...},
    "delete": {"0": [...]}, "order": [...]}, item keys being indexes in the given lists. The
    flat message dict ("create[17].dports") keeps it usable wherever a ValidationError is.
    """

    def __init__(self, errors: dict):
        self.errors = errors
        flat: dict[str, list[str]] = {}
        for part, value in errors.items():
            if not isinstance(value, dict):
                flat[part] = list(value)
                continue
            for key, item in value.items():
                if isinstance(item, dict):
                    for name, messages in item.items():
                        flat[f"{part}[{key}].{name}"] = list(messages)
                else:
                    flat[f"{part}[{key}]"] = list(item)
        super().__init__(flat)


@dataclass
class BulkResult:
    """What `rules_bulk` did; `count` is the number of rules in the set afterwards."""

    created: list[Rule]
    updated: list[Rule]
    deleted: list[int]
    count: int


BULK_CHUNK = 500  # ids per IN (...) query: far below every backend's parameter limit


def _chunks(items: Sequence, size: int = BULK_CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rule_key(ref) -> int | str | None:
    """A rule reference (id or uuid) as the key of the lookup table, None if it is neither."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    if isinstance(ref, str):
        try:
            return str(uuid_lib.UUID(ref))
        except ValueError:
            return None
    return None


@transaction.atomic
def rules_bulk(
    *,
    ruleset: RuleSet,
    create: Sequence[dict] = (),
    update: Sequence[dict] = (),
    delete: Sequence[int | str] = (),
    order: Sequence[int | str] | None = None,
) -> BulkResult:
    """Create, update, delete and reorder many rules of one rule set in one transaction.

    All or nothing: every item is validated first (one NameIndex for all) and any problem
    raises BulkError listing every bad item; only then are rows written, in batches, so
    thousands of rules cost a few dozen queries. Rules are referred to by id or uuid.
    Steps: `delete`; `update` (scalars and references; to move rules use `order`); `order`,
    when given, lists every remaining rule exactly once; `create` appends in list order, or
    inserts an item at its 1-based `position` of the list built so far.
    """
    RuleSet.objects.select_for_update().filter(pk=ruleset.pk).first()
    index = NameIndex.load()
    errors: dict = {}

    def fail(part: str, i: int, messages) -> None:
        errors.setdefault(part, {})[str(i)] = messages

    rows = list(ruleset.rules.order_by("position", "id").values_list("id", "uuid", "position"))
    lookup: dict[int | str, int] = {pk: pk for pk, _, _ in rows} | {str(u): pk for pk, u, _ in rows}
    positions = {pk: pos for pk, _, pos in rows}
    not_ours = f"is not a rule of rule set {ruleset.name}"

    deleted: list[int] = []
    deleted_set: set[int] = set()
    for i, ref in enumerate(delete):
        pk = lookup.get(_rule_key(ref))
        if pk is None:
            fail("delete", i, [f"{ref!r} {not_ours}"])
        elif pk in deleted_set:
            fail("delete", i, [f"rule {ref!r} is listed twice"])
        else:
            deleted.append(pk)
            deleted_set.add(pk)

    pending: dict[int, tuple[int, dict]] = {}  # pk -> (item index, data)
    for i, item in enumerate(update):
        if not isinstance(item, dict):
            fail("update", i, {"non_field_errors": ["must be an object with an id"]})
            continue
        data = dict(item)
        ref = data.pop("id", None) or data.pop("uuid", None)
        data.pop("uuid", None)
        pk = lookup.get(_rule_key(ref))
        if pk is None:
            fail("update", i, {"id": [f"{ref!r} {not_ours}" if ref is not None else "required"]})
        elif pk in deleted_set:
            fail("update", i, {"id": [f"rule {ref!r} is also being deleted"]})
        elif pk in pending:
            fail("update", i, {"id": [f"rule {ref!r} is updated twice"]})
        elif "position" in data:
            fail("update", i, {"position": ["in a bulk call, rules move through 'order'"]})
        else:
            pending[pk] = (i, data)
    updated: list[Rule] = []
    relinked: list[tuple[Rule, tuple[list, list]]] = []
    before_state: dict[int, dict] = {}
    for chunk in _chunks(list(pending)):
        for rule in Rule.objects.filter(pk__in=chunk).prefetch_related(
            "addresses__address", "addresses__group", "service_refs__service", "service_refs__group"
        ):
            i, data = pending[rule.pk]
            before_state[rule.pk] = raw_state(rule)
            try:
                rule, links = rule_build(
                    ruleset=ruleset,
                    data=data,
                    index=index,
                    rule=rule,
                    current=rule_current_refs(rule),
                )
            except ValidationError as exc:
                fail("update", i, exc.message_dict)
                continue
            updated.append(rule)
            if {"sources", "destinations", "services"} & set(data):
                relinked.append((rule, links))

    remaining = [pk for pk, _, _ in rows if pk not in deleted_set]
    sequence: list[int | Rule] = list(remaining)
    if order is not None:
        resolved = [lookup.get(_rule_key(ref)) for ref in order]
        bad = [
            f"[{i}] {ref!r} {not_ours}"
            for i, (ref, pk) in enumerate(zip(order, resolved, strict=True))
            if pk is None
        ]
        if not bad:
            listed = set(resolved)
            missing = [pk for pk in remaining if pk not in listed]
            gone = sorted({pk for pk in resolved if pk in deleted_set})
            if len(resolved) != len(listed):
                bad.append("lists a rule more than once")
            if missing:
                bad.append(
                    f"leaves out rules {', '.join(map(str, missing[:10]))}"
                    + (" …" if len(missing) > 10 else "")
                )
            if gone:
                bad.append(
                    f"lists deleted rules {', '.join(map(str, gone[:10]))}"
                    + (" …" if len(gone) > 10 else "")
                )
        if bad:
            errors["order"] = [
                f"must list every remaining rule exactly once: {'; '.join(bad[:20])}"
            ]
        else:
            sequence = list(resolved)

    created: list[tuple[Rule, tuple[list, list]]] = []
    given_uuids: dict[str, int] = {}
    for i, item in enumerate(create):
        if not isinstance(item, dict):
            fail("create", i, {"non_field_errors": ["must be an object"]})
            continue
        data = dict(item)
        position = data.pop("position", None)
        item_errors: dict[str, list[str]] = {}
        if position is not None and (
            not isinstance(position, int) or isinstance(position, bool) or position < 1
        ):
            item_errors["position"] = ["position must be a whole number from 1"]
        try:
            rule, links = rule_build(ruleset=ruleset, data=data, index=index)
        except ValidationError as exc:
            item_errors.update(exc.message_dict)
        if not item_errors and (data.get("uuid") or data.get("id")):
            if str(rule.uuid) in given_uuids:
                item_errors["uuid"] = [
                    f"id {rule.uuid} is also given to create[{given_uuids[str(rule.uuid)]}]"
                ]
            given_uuids[str(rule.uuid)] = i
        if item_errors:
            fail("create", i, item_errors)
            continue
        created.append((rule, links))
        if position is None:
            sequence.append(rule)
        else:
            sequence.insert(min(position, len(sequence) + 1) - 1, rule)
    for chunk in _chunks(list(given_uuids)):
        for pk, taken in Rule.objects.filter(uuid__in=chunk).values_list("id", "uuid"):
            if pk not in deleted_set:
                fail(
                    "create",
                    given_uuids[str(taken)],
                    {"uuid": [f"a rule with id {taken} already exists"]},
                )

    if errors:
        raise BulkError(errors)

    if deleted:  # raw deletes send no signals: record each rule as it was
        gone = [r for chunk in _chunks(list(deleted)) for r in Rule.objects.filter(pk__in=chunk)]
        record_objects(
            "delete",
            gone,
            before={r.pk: raw_state(r) for r in gone},
            name_of=lambda r: f"{ruleset.name} rule {r.uuid}",
        )
    _delete_rows(Rule, deleted)
    if updated:
        now = timezone.now()
        for rule in updated:
            rule.last_updated = now
        _update_rows(Rule, updated, [*RULE_SCALAR_FIELDS, "last_updated"])
        record_objects("update", updated, before=before_state)
        relinked_ids = [rule.pk for rule, _ in relinked]
        _delete_rows(RuleAddress, relinked_ids, field="rule")
        _delete_rows(RuleService, relinked_ids, field="rule")
        _save_links(relinked)
    moved: list[Rule] = []
    for position, item in enumerate(sequence, start=1):
        if isinstance(item, Rule):
            item.position = position
        elif positions[item] != position:
            moved.append(Rule(pk=item, position=position))
    _update_rows(Rule, moved, ["position"])
    record_objects(
        "update",
        moved,
        before={r.pk: {"position": positions[r.pk]} for r in moved},
        fields=["position"],
        name_of=lambda r: f"{ruleset.name} rule {r.pk}",
    )
    new_rules = [rule for rule, _ in created]
    _insert_rows(Rule, new_rules)
    if new_rules:
        pks = dict(ruleset.rules.values_list("uuid", "id"))
        for rule in new_rules:
            rule.pk = pks[rule.uuid]
            rule._state.adding = False
        revisions.mark_created(new_rules)  # audited with their references by _save_links
    _save_links(created)
    revisions.revisions_touch(rulesets=[ruleset])
    return BulkResult(
        created=[rule for rule, _ in created], updated=updated, deleted=deleted, count=len(sequence)
    )
