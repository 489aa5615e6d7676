"""Where an object is used, transitively: the groups that contain it (nested), the rules and
NAT rules that name it or any of those groups (or the zone), the rule sets of those rules,
and the devices and device groups that apply those rule sets, each with the path that leads
there ("group web → rule edge#3 → rule set edge → device web-1").

One reading for the API, the dashboard and delete refusals, so they never disagree; a few
queries per object whatever the policy's size (group edges are walked in memory).
`unused_objects` is the fleet-wide reverse: every object nothing uses, even through groups.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Model, Q

from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    Device,
    DeviceGroup,
    DeviceGroupRuleSet,
    DeviceMembership,
    DeviceRuleSet,
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

Path = tuple[str, ...]

# The kinds of users, in the order they are listed (nearest first).
KINDS = (
    "address group",
    "service group",
    "rule",
    "NAT rule",
    "device (management sources)",
    "rule set",
    "device group",
    "device",
)


@dataclass(frozen=True)
class Use:
    """One user of an object: what it is, and the steps from the object to it (its own
    label last; one step: a direct use)."""

    kind: str
    pk: int
    label: str
    path: Path
    detail: str = ""  # a rule's uuid, for the delete refusal

    @property
    def direct(self) -> bool:
        return len(self.path) == 1

    @property
    def via(self) -> str:
        """The steps before this user ("group web → rule edge#3"); "" when direct."""
        return " → ".join(self.path[:-1])

    def __str__(self) -> str:
        return f"{self.label} (via {self.via})" if self.via else self.label


def _walk_up(edges: Iterable[tuple[int, int]], start: dict[int, Path], names: dict) -> dict:
    """Groups reachable upwards from `start` (group pk -> path ending at that group), over
    (parent, child) membership `edges`; breadth first, so each path is a shortest one."""
    parents: dict[int, list[int]] = {}
    for parent, child in edges:
        parents.setdefault(child, []).append(parent)
    found = dict(start)
    queue = deque(start)
    while queue:
        pk = queue.popleft()
        for parent in parents.get(pk, ()):
            if parent not in found:
                found[parent] = (*found[pk], names[parent])
                queue.append(parent)
    return found


def _group_models(obj: Model) -> tuple[type[Model], type[Model], str]:
    """(group model, member model, noun) of the groups an object can be a member of."""
    if isinstance(obj, (AddressObject, AddressGroup)):
        return AddressGroup, AddressGroupMember, "address group"
    return ServiceGroup, ServiceGroupMember, "service group"


def _containing_groups(obj: Model) -> tuple[dict[int, Path], dict[int, str]]:
    """The groups that contain `obj`, directly or nested (group pk -> path to it), and the
    names of all groups of that kind."""
    group_model, member_model, noun = _group_models(obj)
    names = dict(group_model.objects.values_list("pk", "name"))
    labels = {pk: f"{noun} {name}" for pk, name in names.items()}
    edges = list(
        member_model.objects.filter(subgroup__isnull=False).values_list("group_id", "subgroup_id")
    )
    if isinstance(obj, group_model):
        direct = {parent for parent, child in edges if child == obj.pk}
    else:
        leaf = "address" if isinstance(obj, AddressObject) else "service"
        direct = set(member_model.objects.filter(**{leaf: obj}).values_list("group_id", flat=True))
    return _walk_up(edges, {pk: (labels[pk],) for pk in direct}, labels), names


def _rule_label(ruleset: str, position: int) -> str:
    return f"rule {ruleset}#{position}"


def _collect(uses: dict[tuple[str, int], Use], use: Use) -> None:
    """Keep one use per user: the one with the shortest path."""
    key = (use.kind, use.pk)
    if key not in uses or len(use.path) < len(uses[key].path):
        uses[key] = use


def _reach(rulesets: dict[int, Path], pk: int, path: Path) -> None:
    if pk not in rulesets or len(path) < len(rulesets[pk]):
        rulesets[pk] = path


def _rule_uses(obj: Model, groups: dict[int, Path], uses: dict, rulesets: dict) -> None:
    """Rules naming `obj` or one of `groups`; the rule sets they reach go to `rulesets`."""
    is_address = isinstance(obj, (AddressObject, AddressGroup))
    link_model = RuleAddress if is_address else RuleService
    if isinstance(obj, (AddressGroup, ServiceGroup)):
        own = Q(group_id=obj.pk)
    else:
        own = Q(**{"address_id" if is_address else "service_id": obj.pk})
    links = link_model.objects.filter(own | Q(group_id__in=list(groups)))
    for link in links.select_related("rule__ruleset").order_by("rule__ruleset__name"):
        rule = link.rule
        path = (*groups.get(link.group_id, ()), _rule_label(rule.ruleset.name, rule.position))
        _collect(uses, Use("rule", rule.pk, path[-1], path, str(rule.uuid)))
        _reach(rulesets, rule.ruleset_id, (*path, f"rule set {rule.ruleset.name}"))


def _address_name_uses(names: dict[str, Path], uses: dict, rulesets: dict[int, Path]) -> None:
    """NAT rules and management sources naming an address or group (they store names)."""
    for nat in NatRule.objects.select_related("ruleset").order_by("ruleset__name", "position"):
        for ref in (*(nat.sources or ()), *(nat.destinations or ())):
            if ref in names:
                path = (*names[ref], f"NAT rule {nat.ruleset.name}#{nat.position}")
                _collect(uses, Use("NAT rule", nat.pk, path[-1], path))
                _reach(rulesets, nat.ruleset_id, (*path, f"rule set {nat.ruleset.name}"))
    for pk, name, sources in Device.objects.values_list("pk", "name", "management_sources"):
        for ref in sources or ():
            if isinstance(ref, str) and ref in names:
                path = (*names[ref], f"device {name} (management sources)")
                _collect(uses, Use("device (management sources)", pk, path[-1], path))


def _ruleset_users(rulesets: dict[int, Path], uses: dict) -> None:
    """Device groups and devices applying the rule sets (devices also through groups)."""
    group_paths: dict[int, Path] = {}
    links = DeviceGroupRuleSet.objects.filter(ruleset_id__in=list(rulesets))
    for link in links.select_related("group").order_by("group__name"):
        path = (*rulesets[link.ruleset_id], f"device group {link.group.name}")
        _collect(uses, Use("device group", link.group_id, path[-1], path))
        _reach(group_paths, link.group_id, path)
    direct = DeviceRuleSet.objects.filter(ruleset_id__in=list(rulesets)).select_related("device")
    for link in direct:
        path = (*rulesets[link.ruleset_id], f"device {link.device.name}")
        _collect(uses, Use("device", link.device_id, path[-1], path))
    members = DeviceMembership.objects.filter(group_id__in=list(group_paths))
    for link in members.select_related("device"):
        path = (*group_paths[link.group_id], f"device {link.device.name}")
        _collect(uses, Use("device", link.device_id, path[-1], path))


def _object_uses(obj: Model, uses: dict, rulesets: dict[int, Path]) -> None:
    """Groups, rules, NAT rules and management sources using an address or service."""
    groups, names = _containing_groups(obj)
    noun = _group_models(obj)[2]
    for pk, path in groups.items():
        _collect(uses, Use(noun, pk, path[-1], path))
    _rule_uses(obj, groups, uses, rulesets)
    if isinstance(obj, (AddressObject, AddressGroup)):
        by_name: dict[str, Path] = {names[pk]: path for pk, path in groups.items()}
        by_name[obj.name] = ()
        _address_name_uses(by_name, uses, rulesets)


def _zone_uses(zone: Zone, uses: dict, rulesets: dict[int, Path]) -> None:
    """Rules and NAT rules naming the zone on either side (they hold it by name)."""
    named = Q(in_zone=zone.name) | Q(out_zone=zone.name)
    for model, kind in ((Rule, "rule"), (NatRule, "NAT rule")):
        rows = model.objects.filter(named).select_related("ruleset")
        for row in rows.order_by("ruleset__name", "position"):
            label = f"{kind} {row.ruleset.name}#{row.position}"
            _collect(uses, Use(kind, row.pk, label, (label,), str(row.uuid)))
            _reach(rulesets, row.ruleset_id, (label, f"rule set {row.ruleset.name}"))


def where_used(obj: Model) -> list[Use]:
    """Every user of an address, service, either kind of group, zone, rule set or device
    group, transitively, nearest kinds first (see the module docstring)."""
    uses: dict[tuple[str, int], Use] = {}
    rulesets: dict[int, Path] = {}
    if isinstance(obj, (AddressObject, AddressGroup, Service, ServiceGroup)):
        _object_uses(obj, uses, rulesets)
    elif isinstance(obj, Zone):
        _zone_uses(obj, uses, rulesets)
    elif isinstance(obj, RuleSet):
        rulesets[obj.pk] = ()
    elif isinstance(obj, DeviceGroup):
        for link in obj.device_links.select_related("device"):
            label = f"device {link.device.name}"
            _collect(uses, Use("device", link.device_id, label, (label,)))
    for pk, path in rulesets.items():
        if path:
            _collect(uses, Use("rule set", pk, path[-1], path))
    if rulesets:
        _ruleset_users(rulesets, uses)
    order = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(uses.values(), key=lambda u: (order[u.kind], len(u.path), u.label))


def in_use_message(obj: Model, uses: list[Use], shown: int = 20, examples: int = 3) -> str:
    """The refusal to delete `obj`: its direct users by name, then the users reached through
    them ("and 4 more via groups: rule edge#3 (via address group web), ...")."""
    direct = [f"{u.label} ({u.detail})" if u.detail else u.label for u in uses if u.direct]
    text = ", ".join(direct[:shown])
    if len(direct) > shown:
        text += f" and {len(direct) - shown} more"
    further = [u for u in uses if not u.direct]
    if further:
        through = "groups" if any(u.kind.endswith("group") for u in uses if u.direct) else "them"
        named = "; ".join(str(u) for u in further[:examples])
        more = "; …" if len(further) > examples else ""
        text += f"; and {len(further)} more via {through}: {named}{more}"
    return f"{obj} is still in use by: {text}"


@dataclass(frozen=True)
class Unused:
    """An object nothing uses, even through groups, and why it counts as unused."""

    kind: str  # address, address group, service, service group, zone, rule set
    pk: int
    name: str
    reason: str


def _closure_down(roots: set[int], edges: list[tuple[int, int]]) -> set[int]:
    """`roots` and every group nested in them, over (parent, child) edges."""
    children: dict[int, list[int]] = {}
    for parent, child in edges:
        children.setdefault(parent, []).append(child)
    found, stack = set(roots), list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _unused_of(
    kinds: tuple[str, str],
    models: tuple[type[Model], type[Model], type[Model], type[Model]],
    leaf: str,
    named: set[str],
) -> list[Unused]:
    """Unused leaves and groups of one family (addresses or services): used are those a
    rule or `named` (NAT rules, management sources) refers to, and all they contain."""
    leaf_model, group_model, member_model, link_model = models
    group_names = dict(group_model.objects.values_list("pk", "name"))
    links = list(link_model.objects.values_list(f"{leaf}_id", "group_id"))
    roots = {g for _, g in links if g} | {pk for pk, n in group_names.items() if n in named}
    members = list(member_model.objects.values_list("group_id", "subgroup_id", f"{leaf}_id"))
    used_groups = _closure_down(roots, [(g, sub) for g, sub, _ in members if sub])
    used_leaves = {pk for pk, _ in links if pk} | {
        pk for g, _, pk in members if pk and g in used_groups
    }
    holders: dict[tuple[str, int], list[str]] = {}
    for g, sub, pk in members:
        if sub or pk:
            holders.setdefault(("g", sub) if sub else ("l", pk), []).append(group_names[g])
    out = []
    for pk, name in leaf_model.objects.order_by("name").values_list("pk", "name"):
        if pk not in used_leaves and name not in named:
            out.append(Unused(kinds[0], pk, name, _why(holders.get(("l", pk)))))
    for pk, name in sorted(group_names.items(), key=lambda item: item[1]):
        if pk not in used_groups:
            out.append(Unused(kinds[1], pk, name, _why(holders.get(("g", pk)))))
    return out


def _why(groups: list[str] | None) -> str:
    if groups:
        return "only in groups nothing uses: " + ", ".join(sorted(set(groups)))
    return "nothing refers to it"


def _unused_rulesets() -> list[Unused]:
    applied = set(DeviceRuleSet.objects.values_list("ruleset_id", flat=True))
    populated = set(DeviceMembership.objects.values_list("group_id", flat=True))
    empty_groups: dict[int, list[str]] = {}
    for rs, group, name in DeviceGroupRuleSet.objects.values_list(
        "ruleset_id", "group_id", "group__name"
    ):
        if group in populated:
            applied.add(rs)
        else:
            empty_groups.setdefault(rs, []).append(name)
    return [
        Unused(
            "rule set",
            pk,
            name,
            "only device groups without devices: " + ", ".join(sorted(empty_groups[pk]))
            if pk in empty_groups
            else "no device or device group applies it",
        )
        for pk, name in RuleSet.objects.order_by("name").values_list("pk", "name")
        if pk not in applied
    ]


def _unused_zones() -> list[Unused]:
    used: set[str] = set()
    for model in (Rule, NatRule):
        for in_zone, out_zone in model.objects.values_list("in_zone", "out_zone"):
            used.update(z for z in (in_zone, out_zone) if z)
    return [
        Unused("zone", pk, name, "no rule or NAT rule names it")
        for pk, name in Zone.objects.order_by("name").values_list("pk", "name")
        if name not in used
    ]


def unused_objects() -> list[Unused]:
    """Every address, service, group, zone and rule set that nothing uses, transitively: an
    address only in groups nothing uses is unused too; a rule set counts as used once it
    reaches a device (directly or through a device group that has devices)."""
    named: set[str] = set()
    for sources, destinations in NatRule.objects.values_list("sources", "destinations"):
        named.update(n for n in (*(sources or ()), *(destinations or ())) if isinstance(n, str))
    for sources in Device.objects.values_list("management_sources", flat=True):
        named.update(n for n in sources or () if isinstance(n, str))
    return (
        _unused_of(
            ("address", "address group"),
            (AddressObject, AddressGroup, AddressGroupMember, RuleAddress),
            "address",
            named,
        )
        + _unused_of(
            ("service", "service group"),
            (Service, ServiceGroup, ServiceGroupMember, RuleService),
            "service",
            set(),
        )
        + _unused_zones()
        + _unused_rulesets()
    )


def unused_for_ruleset(ruleset: RuleSet) -> list[Unused]:
    """What the rule set analysis lists besides its rules' findings: the objects (addresses,
    services, their groups, zones) nothing uses, fleet-wide and transitively (cleanup
    candidates an admin tidying rules wants next to them), and this rule set itself when no
    device applies it; other rule sets are not this analysis's business."""
    return [u for u in unused_objects() if u.kind != "rule set" or u.pk == ruleset.pk]
