"""The canonical dict form of a document: defaults and empty values left out, so
`PolicyDocument.from_dict(doc.to_dict()) == doc` and exports stay short."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model import Device, Rule, RuleSet
from .times import format_datetime

if TYPE_CHECKING:
    from .policy import PolicyDocument


def document_dict(doc: PolicyDocument) -> dict:
    """The whole document (see `PolicyDocument.to_dict`)."""
    out: dict = {"version": doc.version}
    if doc.prune is not None:
        out["prune"] = doc.prune
    if doc.scope is not None:
        out["scope"] = doc.scope.to_dict()
    out["addresses"] = [
        _compact({"name": a.name, "value": a.value, "description": a.description})
        for a in doc.addresses
    ]
    out["address_groups"] = [
        _compact(
            {"name": g.name, "members": list(g.members), "description": g.description},
            keep=("members",),
        )
        for g in doc.address_groups
    ]
    out["services"] = [
        _compact(
            {
                "name": s.name,
                "protocol": s.protocol,
                "ports": list(s.ports),
                "source_ports": list(s.source_ports),
                "icmp_type": s.icmp_type,
                "description": s.description,
            }
        )
        for s in doc.services
    ]
    out["service_groups"] = [
        _compact(
            {"name": g.name, "members": list(g.members), "description": g.description},
            keep=("members",),
        )
        for g in doc.service_groups
    ]
    out["zones"] = [
        _compact(
            {
                "name": z.name,
                "interfaces": list(z.interfaces),
                "networks": list(z.networks),
                "description": z.description,
            },
            keep=("interfaces",),
        )
        for z in doc.zones
    ]
    out["rulesets"] = [ruleset_dict(rs) for rs in doc.rulesets]
    out["device_groups"] = [
        _compact(
            {
                "name": g.name,
                "rulesets": list(g.rulesets),
                "description": g.description,
                "probes": [p.to_dict() for p in g.probes],
            }
        )
        for g in doc.device_groups
    ]
    out["devices"] = [device_dict(d) for d in doc.devices]
    return {k: v for k, v in out.items() if v != [] or k == "version"}


def _compact(data: dict, keep: tuple[str, ...] = ()) -> dict:
    return {
        k: v
        for k, v in data.items()
        if k in keep or not (v is None or v == "" or v == [] or v is False)
    }


def rule_dict(rule: Rule) -> dict:
    data = _compact(
        {
            "id": rule.id,
            "chain": rule.chain,
            "action": rule.action,
            "sources": list(rule.sources),
            "destinations": list(rule.destinations),
            "services": list(rule.services),
            "protocol": rule.protocol,
            "dports": list(rule.dports),
            "sports": list(rule.sports),
            "icmp_type": rule.icmp_type,
            "sources_negate": rule.sources_negate,
            "destinations_negate": rule.destinations_negate,
            "in_interface": rule.in_interface,
            "out_interface": rule.out_interface,
            "states": list(rule.states),
            "log": rule.log,
            "log_prefix": rule.log_prefix,
            "rate_limit": rule.rate_limit,
            "burst": rule.burst,
            "comment": rule.comment,
            "expires_at": format_datetime(rule.expires_at) if rule.expires_at else None,
            "reject_with": rule.reject_with,
            "in_zone": rule.in_zone,
            "out_zone": rule.out_zone,
        }
    )
    if rule.rate_limit_per_source is not None:
        data["rate_limit_per_source"] = rule.rate_limit_per_source.to_dict()
    if not rule.enabled:
        data["enabled"] = False
    return data


def ruleset_dict(rs: RuleSet) -> dict:
    out = _compact({"name": rs.name, "description": rs.description})
    out["rules"] = [rule_dict(r) for r in rs.rules]
    if rs.nat:
        out["nat"] = []
        for n in rs.nat:
            item = _compact(
                {
                    "id": n.id,
                    "type": n.type,
                    "chain": n.chain,
                    "in_interface": n.in_interface,
                    "out_interface": n.out_interface,
                    "in_zone": n.in_zone,
                    "out_zone": n.out_zone,
                    "protocol": n.protocol,
                    "sources": list(n.sources),
                    "destinations": list(n.destinations),
                    "dports": list(n.dports),
                    "to": n.to,
                    "comment": n.comment,
                }
            )
            if not n.enabled:
                item["enabled"] = False
            out["nat"].append(item)
    if rs.assertions:
        out["assertions"] = [
            _compact(
                {
                    "name": a.name,
                    "chain": a.chain,
                    "protocol": a.protocol,
                    "source": a.source,
                    "destination": a.destination,
                    "sport": a.sport,
                    "dport": a.dport,
                    "icmp_type": a.icmp_type,
                    "in_interface": a.in_interface,
                    "out_interface": a.out_interface,
                    "state": None if a.state == "new" else a.state,
                    "expect": a.expect,
                    "description": a.description,
                }
            )
            for a in rs.assertions
        ]
    return out


def device_dict(d: Device) -> dict:
    out = _compact({"name": d.name, "address": d.address, "description": d.description})
    out["agent_port"] = d.agent_port
    out.update(_compact({"groups": list(d.groups), "rulesets": list(d.rulesets)}))
    out["default_policy"] = {
        "input": d.default_input,
        "forward": d.default_forward,
        "output": d.default_output,
    }
    if d.management_sources:
        out["management_sources"] = list(d.management_sources)
    out["stateful"] = d.stateful
    out["allow_loopback"] = d.allow_loopback
    if d.probes:
        out["probes"] = [p.to_dict() for p in d.probes]
    return out
