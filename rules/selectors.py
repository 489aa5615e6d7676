"""Reads of the policy model. `policy_dict` is the bridge to the compiler and to export:
it returns the database as the policy document of POLICY-FORMAT.md (plain dicts), so the
database, YAML files and CI all go through the same parser and compiler.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Prefetch, Q

from rules.choices import Side
from rules.models import AddressGroup, AddressObject, NatRule, Rule, RuleSet, Service, ServiceGroup


def _described(d: dict, obj) -> dict:
    if getattr(obj, "description", ""):
        d["description"] = obj.description
    return d


def rule_dict(rule: Rule) -> dict:
    """One rule in document form: defaults left out, references as names."""
    d: dict = {"id": str(rule.uuid), "chain": rule.chain, "action": rule.action}
    srcs = [a.ref for a in rule.addresses.all() if a.side == Side.SOURCE]
    dsts = [a.ref for a in rule.addresses.all() if a.side == Side.DESTINATION]
    svcs = [s.ref for s in rule.service_refs.all()]
    for key, value in (("sources", srcs), ("destinations", dsts), ("services", svcs)):
        if value:
            d[key] = value
    for key in ("protocol", "dports", "sports", "icmp_type", "in_interface", "out_interface",
                "states", "log_prefix", "rate_limit", "comment"):
        if getattr(rule, key):
            d[key] = getattr(rule, key)
    for key in ("sources_negate", "destinations_negate", "log"):
        if getattr(rule, key):
            d[key] = True
    if rule.burst is not None:
        d["burst"] = rule.burst
    if not rule.enabled:
        d["enabled"] = False
    if rule.expires_at:
        d["expires_at"] = rule.expires_at.isoformat().replace("+00:00", "Z")
    return d


def nat_dict(nat: NatRule) -> dict:
    d: dict = {"id": str(nat.uuid), "type": nat.type}
    for key in ("chain", "in_interface", "out_interface", "protocol", "dports", "sources", "destinations", "to", "comment"):
        if getattr(nat, key):
            d[key] = getattr(nat, key)
    if not nat.enabled:
        d["enabled"] = False
    return d


def rules_queryset():
    return Rule.objects.order_by("position", "id").prefetch_related(
        "addresses__address", "addresses__group", "service_refs__service", "service_refs__group"
    )


def ruleset_dict(ruleset: RuleSet) -> dict:
    d = _described({"name": ruleset.name}, ruleset)
    d["rules"] = [rule_dict(r) for r in ruleset.rules.all()]
    nat = [nat_dict(n) for n in ruleset.nat_rules.all()]
    if nat:
        d["nat"] = nat
    if ruleset.assertions:
        d["assertions"] = ruleset.assertions
    return d


def device_dict(device) -> dict:
    d = _described({"name": device.name, "address": device.address, "agent_port": device.agent_port}, device)
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
    from agents.models import Device, DeviceGroup

    device_qs = Device.objects.prefetch_related("group_links__group", "ruleset_links__ruleset")
    group_qs = DeviceGroup.objects.prefetch_related("ruleset_links__ruleset")
    ruleset_qs = RuleSet.objects.prefetch_related(
        Prefetch("rules", queryset=rules_queryset()),
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
    return {
        "version": 1,
        "addresses": [_described({"name": o.name, "value": o.value}, o) for o in AddressObject.objects.order_by("name")],
        "address_groups": [
            _described({"name": g.name, "members": [m.ref for m in g.members.all()]}, g)
            for g in AddressGroup.objects.order_by("name").prefetch_related("members__address", "members__subgroup")
        ],
        "services": [_service_dict(s) for s in Service.objects.order_by("name")],
        "service_groups": [
            _described({"name": g.name, "members": [m.ref for m in g.members.all()]}, g)
            for g in ServiceGroup.objects.order_by("name").prefetch_related("members__service", "members__subgroup")
        ],
        "rulesets": [ruleset_dict(rs) for rs in ruleset_qs.order_by("name")],
        "device_groups": [
            _described({"name": g.name, "rulesets": [link.ruleset.name for link in g.ruleset_links.all()]}, g)
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
