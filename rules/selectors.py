"""Reads of the policy model. `policy_dict` is the bridge to the compiler and to export:
it returns the database as the policy document of POLICY-FORMAT.md (plain dicts), so the
database, YAML files and CI all go through the same parser and compiler.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Prefetch, Q

from rules.choices import Side
from rules.models import (
    AddressGroup,
    AddressObject,
    NatRule,
    Rule,
    RuleAddress,
    RuleService,
    RuleSet,
    Service,
    ServiceGroup,
)


def _described(d: dict, obj) -> dict:
    if getattr(obj, "description", ""):
        d["description"] = obj.description
    return d


_RULE_TEXT_FIELDS = (
    "protocol",
    "dports",
    "sports",
    "icmp_type",
    "in_interface",
    "out_interface",
    "states",
    "log_prefix",
    "rate_limit",
    "comment",
)
_RULE_FLAGS = ("sources_negate", "destinations_negate", "log")
_RULE_COLUMNS = (
    "id",
    "ruleset_id",
    "uuid",
    "chain",
    "action",
    "enabled",
    "burst",
    "expires_at",
    *_RULE_TEXT_FIELDS,
    *_RULE_FLAGS,
)


def rule_dict(row: dict, refs: dict[str, list[str]]) -> dict:
    """One rule in document form: defaults left out, references as names.

    `row` holds the rule's columns (`Rule.objects.values(...)`), `refs` its sources,
    destinations and services by name; plain rows, because a revision snapshot or an
    export reads tens of thousands of rules.
    """
    d: dict = {"id": str(row["uuid"]), "chain": row["chain"], "action": row["action"]}
    for key in ("sources", "destinations", "services"):
        if refs.get(key):
            d[key] = refs[key]
    for key in _RULE_TEXT_FIELDS:
        if row[key]:
            d[key] = row[key]
    for key in _RULE_FLAGS:
        if row[key]:
            d[key] = True
    if row["burst"] is not None:
        d["burst"] = row["burst"]
    if not row["enabled"]:
        d["enabled"] = False
    if row["expires_at"]:
        d["expires_at"] = row["expires_at"].isoformat().replace("+00:00", "Z")
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
    for row in rows.values(*_RULE_COLUMNS).iterator(chunk_size=5000):
        out[row["ruleset_id"]].append(rule_dict(row, refs.get(row["id"], {})))
    return out


def nat_dict(nat: NatRule) -> dict:
    d: dict = {"id": str(nat.uuid), "type": nat.type}
    for key in (
        "chain",
        "in_interface",
        "out_interface",
        "protocol",
        "dports",
        "sources",
        "destinations",
        "to",
        "comment",
    ):
        if getattr(nat, key):
            d[key] = getattr(nat, key)
    if not nat.enabled:
        d["enabled"] = False
    return d


def rules_queryset():
    return Rule.objects.order_by("position", "id").prefetch_related(
        "addresses__address", "addresses__group", "service_refs__service", "service_refs__group"
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
    return d


def policy_dict(*, devices: Iterable | None = None, rulesets: Iterable | None = None) -> dict:
    """The policy document for everything, or narrowed to some devices and/or rule sets.

    Objects are always complete (cheap, and references must resolve); rule sets are those
    named, plus those the chosen devices use; devices and groups are those chosen.
    """
    from rules.models import Device, DeviceGroup

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
    return {
        "version": 1,
        "addresses": [
            _described({"name": o.name, "value": o.value}, o)
            for o in AddressObject.objects.order_by("name")
        ],
        "address_groups": [
            _described({"name": g.name, "members": [m.ref for m in g.members.all()]}, g)
            for g in AddressGroup.objects.order_by("name").prefetch_related(
                "members__address", "members__subgroup"
            )
        ],
        "services": [_service_dict(s) for s in Service.objects.order_by("name")],
        "service_groups": [
            _described({"name": g.name, "members": [m.ref for m in g.members.all()]}, g)
            for g in ServiceGroup.objects.order_by("name").prefetch_related(
                "members__service", "members__subgroup"
            )
        ],
        "rulesets": [ruleset_dict(rs, rules[rs.pk]) for rs in chosen],
        "device_groups": [
            _described(
                {"name": g.name, "rulesets": [link.ruleset.name for link in g.ruleset_links.all()]},
                g,
            )
            for g in group_qs.order_by("name")
        ],
        "devices": [device_dict(d) for d in device_qs.order_by("name")],
    }


def _service_dict(service: Service) -> dict:
    d = _described({"name": service.name, "protocol": service.protocol}, service)
    if service.ports:
        d["ports"] = service.ports
    if service.source_ports:
        d["source_ports"] = service.source_ports
    if service.icmp_type:
        d["icmp_type"] = service.icmp_type
    return d
