"""Writes to the policy model. Views, serializers, forms and tasks call these; nothing else
changes policy rows, so every path (API, admin, UI, import) gets the same validation.

References (to addresses, groups, services) are given as names, exactly as in the policy
document; a string that reads as an address is a literal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Model

from rules.choices import Side
from rules.compiler import values
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
    "enabled", "chain", "action", "sources_negate", "destinations_negate", "protocol", "dports",
    "sports", "icmp_type", "in_interface", "out_interface", "states", "log", "log_prefix",
    "rate_limit", "burst", "comment", "expires_at",
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
        if values.is_literal(ref):
            return ref
        obj, grp = self.addresses.get(ref), self.address_groups.get(ref)
        if obj and grp:
            raise ValueError(f"{ref!r} is both an address and an address group")
        if not (obj or grp):
            raise ValueError(f"unknown address or address group {ref!r}")
        return obj or grp

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
            return {values.parse_address(target).version}
        if isinstance(target, AddressObject):
            return {values.parse_address(target.value).version}
        if target.pk not in self._families:
            self._families[target.pk] = set()  # guards against cycles while computing
            found: set[int] = set()
            for m in target.members.select_related("address", "subgroup"):
                found |= self.families(m.address or m.subgroup or m.literal)
            self._families[target.pk] = found
        return self._families[target.pk]


def _address_group_reaches(start: AddressGroup, target: AddressGroup) -> bool:
    seen, stack = set(), [start.pk]
    while stack:
        pk = stack.pop()
        if pk == target.pk:
            return True
        if pk in seen:
            continue
        seen.add(pk)
        stack.extend(
            AddressGroupMember.objects.filter(group_id=pk, subgroup__isnull=False).values_list("subgroup_id", flat=True)
        )
    return False


def _service_group_reaches(start: ServiceGroup, target: ServiceGroup) -> bool:
    seen, stack = set(), [start.pk]
    while stack:
        pk = stack.pop()
        if pk == target.pk:
            return True
        if pk in seen:
            continue
        seen.add(pk)
        stack.extend(
            ServiceGroupMember.objects.filter(group_id=pk, subgroup__isnull=False).values_list("subgroup_id", flat=True)
        )
    return False


# --- objects -----------------------------------------------------------------------------


def _check_cross_kind_name(obj: Model) -> None:
    """An address and an address group (or a service and a service group) may not share a name."""
    twins = {
        AddressObject: AddressGroup, AddressGroup: AddressObject,
        Service: ServiceGroup, ServiceGroup: Service,
    }
    other = twins.get(type(obj))
    if other and other.objects.filter(name=obj.name).exists():
        raise ValidationError({"name": [f"a {other._meta.verbose_name} is already named {obj.name!r}"]})


def object_save(obj: Model) -> Model:
    """Validate and save one address, service, group, rule set or device."""
    obj.full_clean()
    _check_cross_kind_name(obj)
    obj.save()
    return obj


@transaction.atomic
def address_group_set_members(*, group: AddressGroup, members: Sequence[str], index: NameIndex | None = None) -> None:
    """Replace a group's members (address names, group names, literals); refuses cycles."""
    index = index or NameIndex.load()
    rows, errors = [], []
    for i, ref in enumerate(members):
        try:
            target = index.address_ref(ref)
        except ValueError as exc:
            errors.append(f"members[{i}]: {exc}")
            continue
        if isinstance(target, AddressGroup):
            if target.pk == group.pk or _address_group_reaches(target, group):
                errors.append(f"members[{i}]: {ref!r} contains {group.name!r}: a group cannot contain itself")
                continue
            rows.append(AddressGroupMember(group=group, index=i, subgroup=target))
        elif isinstance(target, AddressObject):
            rows.append(AddressGroupMember(group=group, index=i, address=target))
        else:
            rows.append(AddressGroupMember(group=group, index=i, literal=target))
    if errors:
        raise ValidationError({"members": errors})
    group.members.all().delete()
    AddressGroupMember.objects.bulk_create(rows)


@transaction.atomic
def service_group_set_members(*, group: ServiceGroup, members: Sequence[str], index: NameIndex | None = None) -> None:
    index = index or NameIndex.load()
    rows, errors = [], []
    for i, ref in enumerate(members):
        try:
            target = index.service_ref(ref)
        except ValueError as exc:
            errors.append(f"members[{i}]: {exc}")
            continue
        if isinstance(target, ServiceGroup):
            if target.pk == group.pk or _service_group_reaches(target, group):
                errors.append(f"members[{i}]: {ref!r} contains {group.name!r}: a group cannot contain itself")
                continue
            rows.append(ServiceGroupMember(group=group, index=i, subgroup=target))
        else:
            rows.append(ServiceGroupMember(group=group, index=i, service=target))
    if errors:
        raise ValidationError({"members": errors})
    group.members.all().delete()
    ServiceGroupMember.objects.bulk_create(rows)


def object_users(obj: Model) -> list[str]:
    """Everything that refers to an object, as readable strings (empty: safe to delete)."""
    users: list[str] = []
    if isinstance(obj, (AddressObject, AddressGroup)):
        users += [f"address group {m.group.name}" for m in
                  (obj.group_memberships if isinstance(obj, AddressObject) else obj.parent_memberships).select_related("group")]
        users += [f"rule {ra.rule.ruleset.name}#{ra.rule.position} ({ra.rule.uuid})"
                  for ra in obj.rule_uses.select_related("rule__ruleset")]
        for nat in NatRule.objects.select_related("ruleset"):
            if obj.name in (nat.sources or []) or obj.name in (nat.destinations or []):
                users.append(f"NAT rule {nat.ruleset.name}#{nat.position}")
        from agents.models import Device

        users += [f"device {d.name} (management sources)" for d in Device.objects.all()
                  if obj.name in (d.management_sources or [])]
    elif isinstance(obj, (Service, ServiceGroup)):
        users += [f"service group {m.group.name}" for m in
                  (obj.group_memberships if isinstance(obj, Service) else obj.parent_memberships).select_related("group")]
        users += [f"rule {rs.rule.ruleset.name}#{rs.rule.position} ({rs.rule.uuid})"
                  for rs in obj.rule_uses.select_related("rule__ruleset")]
    elif isinstance(obj, RuleSet):
        users += [f"device {link.device.name}" for link in obj.device_links.select_related("device")]
        users += [f"device group {link.group.name}" for link in obj.device_group_links.select_related("group")]
    return sorted(set(users))


@transaction.atomic
def object_delete(obj: Model) -> None:
    """Delete an object, refusing (naming the users) while anything still refers to it."""
    users = object_users(obj)
    if users:
        shown = ", ".join(users[:20]) + (f" and {len(users) - 20} more" if len(users) > 20 else "")
        raise ValidationError({"non_field_errors": [f"{obj} is still in use by: {shown}"]})
    obj.delete()


# --- rules -------------------------------------------------------------------------------


@dataclass
class RuleRefs:
    sources: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)


def resolve_rule_refs(rule: Rule, refs: RuleRefs, index: NameIndex) -> tuple[list[RuleAddress], list[RuleService]]:
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
        errors.setdefault("services", []).append("give either services or a literal protocol/ports, not both")
    if errors:
        raise ValidationError(errors)
    return addresses, services


def rule_build(*, ruleset: RuleSet, data: dict, index: NameIndex, rule: Rule | None = None):
    """Validate one rule's data (scalars + references) without saving; returns (rule, links)."""
    rule = rule or Rule(ruleset=ruleset)
    unknown = set(data) - set(RULE_SCALAR_FIELDS) - {"sources", "destinations", "services", "position", "uuid", "id"}
    if unknown:
        raise ValidationError({k: ["unknown field"] for k in sorted(unknown)})
    for name in RULE_SCALAR_FIELDS:
        if name in data:
            setattr(rule, name, data[name])
    if data.get("uuid") or data.get("id"):
        rule.uuid = data.get("uuid") or data.get("id")
    errors: dict[str, list[str]] = {}
    try:
        rule.full_clean(exclude=["ruleset", "position", "uuid"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    current = RuleRefs()
    if rule.pk:
        for link in rule.addresses.select_related("address", "group"):
            (current.sources if link.side == Side.SOURCE else current.destinations).append(link.ref)
        current.services = [link.ref for link in rule.service_refs.select_related("service", "group")]
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


def _save_links(rules_links: Iterable[tuple[Rule, tuple[list[RuleAddress], list[RuleService]]]]) -> None:
    addresses, services = [], []
    for rule, (addr_links, svc_links) in rules_links:
        for link in addr_links:
            link.rule = rule
        for link in svc_links:
            link.rule = rule
        addresses += addr_links
        services += svc_links
    RuleAddress.objects.bulk_create(addresses, batch_size=2000)
    RuleService.objects.bulk_create(services, batch_size=2000)


def _next_position(ruleset: RuleSet) -> int:
    return (ruleset.rules.aggregate(m=Max("position"))["m"] or 0) + 1


@transaction.atomic
def rule_create(*, ruleset: RuleSet, data: dict, position: int | None = None) -> Rule:
    """Create a rule at the end (or at `position`, shifting the rules below it down)."""
    rule, links = rule_build(ruleset=ruleset, data=data, index=NameIndex.load())
    RuleSet.objects.select_for_update().filter(pk=ruleset.pk).first()
    last = _next_position(ruleset)
    rule.position = last
    rule.save()
    _save_links([(rule, links)])
    if position is not None and position != last:
        rule_move(rule=rule, position=position)
        rule.refresh_from_db()
    return rule


@transaction.atomic
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
    return rule


@transaction.atomic
def rule_delete(*, rule: Rule) -> None:
    ruleset = rule.ruleset
    rule.delete()
    renumber(ruleset=ruleset)


def renumber(*, ruleset: RuleSet, order: Sequence[int] | None = None) -> None:
    """Give the rule set's rules positions 1..n (in `order` of rule ids when given)."""
    ids = list(order) if order is not None else list(ruleset.rules.order_by("position", "id").values_list("id", flat=True))
    rules = {r.pk: r for r in Rule.objects.filter(pk__in=ids).only("id", "position")}
    changed = []
    for pos, pk in enumerate(ids, start=1):
        if rules[pk].position != pos:
            rules[pk].position = pos
            changed.append(rules[pk])
    Rule.objects.bulk_update(changed, ["position"], batch_size=2000)


@transaction.atomic
def rule_move(*, rule: Rule, position: int) -> None:
    """Move a rule to `position` (1-based, clamped), renumbering the others atomically."""
    RuleSet.objects.select_for_update().filter(pk=rule.ruleset_id).first()
    ids = list(Rule.objects.filter(ruleset_id=rule.ruleset_id).order_by("position", "id").values_list("id", flat=True))
    if not isinstance(position, int) or position < 1:
        raise ValidationError({"position": ["position must be a whole number from 1"]})
    ids.remove(rule.pk)
    ids.insert(min(position, len(ids) + 1) - 1, rule.pk)
    renumber(ruleset=rule.ruleset, order=ids)


@transaction.atomic
def rules_reorder(*, ruleset: RuleSet, order: Sequence[int]) -> None:
    """Set the whole order at once; `order` must list every rule id of the set exactly once."""
    RuleSet.objects.select_for_update().filter(pk=ruleset.pk).first()
    current = set(ruleset.rules.values_list("id", flat=True))
    if len(order) != len(set(order)) or set(order) != current:
        raise ValidationError({"order": ["must list every rule id of this rule set exactly once"]})
    renumber(ruleset=ruleset, order=order)
