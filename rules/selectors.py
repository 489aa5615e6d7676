"""Reads of the policy model. `policy_dict` is the bridge to the compiler and to export:
it returns the database as the policy document of POLICY-FORMAT.md (plain dicts), so the
database, YAML files and CI all go through the same parser and compiler.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Prefetch, Q

from rules.choices import Side
from rules.document_form import RULE_COLUMNS, nat_dict, rule_dict
from rules.models import (
    AddressGroup,
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


def policy_dict(*, devices: Iterable | None = None, rulesets: Iterable | None = None) -> dict:
    """The policy document for everything, or narrowed to some devices and/or rule sets.

    Objects are always complete (cheap, and references must resolve); rule sets are those
    named, plus those the chosen devices use; devices and groups are those chosen.
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
        "device_groups": [device_group_dict(g) for g in group_qs.order_by("name")],
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
