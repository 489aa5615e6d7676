"""Export: the database as the policy document of POLICY-FORMAT.md, in YAML or JSON.

`rules.selectors.policy_dict` does the reading; this module only fixes the key order (the
order POLICY-FORMAT.md shows, so exports diff cleanly in a repository) and renders text.
Exporting twice gives byte-identical output; importing an export changes nothing.
An export narrowed to some rule sets or devices says so in its `scope`, so importing it
with prune deletes nothing outside the rule sets and devices it was made for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import yaml

from compiler.document import keys
from rules.models import Device, RuleSet
from rules.selectors import policy_dict

FORMATS = ("yaml", "json")

# Key order of each kind of entry, as POLICY-FORMAT.md lists them; unknown keys go last.
_ORDER: dict[str, tuple[str, ...]] = {
    "document": keys.DOCUMENT,
    "zones": ("name", "interfaces", "networks", "description"),
    "addresses": ("name", "value", "description"),
    "address_groups": ("name", "members", "description"),
    "services": ("name", "protocol", "ports", "source_ports", "icmp_type", "description"),
    "service_groups": ("name", "members", "description"),
    "rulesets": ("name", "description", "rules", "nat", "assertions"),
    "rules": keys.RULE,
    "nat": keys.NAT,
    "assertions": keys.ASSERTION,
    "device_groups": ("name", "rulesets", "description", "probes"),
    "devices": (
        "name",
        "description",
        "address",
        "agent_port",
        "groups",
        "rulesets",
        "default_policy",
        "management_sources",
        "stateful",
        "allow_loopback",
        "probes",
    ),
    "default_policy": ("input", "forward", "output"),
    "probes": ("type", "host", "port", "url", "expect_status", "timeout"),
}
_NESTED = {
    "rulesets": ("rules", "nat", "assertions"),
    "devices": ("default_policy", "probes"),
    "device_groups": ("probes",),
}


def _ordered(data: dict, kind: str) -> dict:
    order = _ORDER[kind]
    keys = sorted(data, key=lambda k: (order.index(k) if k in order else len(order), k))
    out = {}
    for key in keys:
        value = data[key]
        if key in _NESTED.get(kind, ()):
            value = (
                [_ordered(v, key) for v in value]
                if isinstance(value, list)
                else _ordered(value, key)
            )
        out[key] = value
    return out


def canonical_order(document: dict) -> dict:
    """The document with every mapping's keys in POLICY-FORMAT.md order."""
    top = _ordered(document, "document")
    for kind in _ORDER["document"]:
        if isinstance(top.get(kind), list):
            top[kind] = [_ordered(item, kind) for item in top[kind]]
    return top


def export_document(*, devices: Iterable | None = None, rulesets: Iterable | None = None) -> dict:
    """The policy (all, or narrowed to some devices and/or rule sets) as a document dict."""
    return canonical_order(policy_dict(devices=devices, rulesets=rulesets))


class UnknownTargets(ValueError):
    """`export_named` was given rule set or device names that do not exist."""

    def __init__(self, names: list[str]):
        self.names = names
        super().__init__(f"unknown rule set or device: {', '.join(names)}")


def export_named(*, rulesets: Iterable[str] = (), devices: Iterable[str] = ()) -> dict:
    """The document narrowed to the rule sets and devices named (all of it when none are);
    UnknownTargets names those that do not exist."""
    rs_names, dev_names = list(rulesets), list(devices)
    found_rs = list(RuleSet.objects.filter(name__in=rs_names))
    found_dev = list(Device.objects.filter(name__in=dev_names))
    unknown = sorted(set(rs_names) - {r.name for r in found_rs}) + sorted(
        set(dev_names) - {d.name for d in found_dev}
    )
    if unknown:
        raise UnknownTargets(unknown)
    if not (rs_names or dev_names):
        return export_document()
    doc = export_document(devices=found_dev, rulesets=found_rs)
    doc["scope"] = export_scope(rulesets=rs_names, devices=dev_names)
    return canonical_order(doc)


def export_scope(*, rulesets: Iterable[str] = (), devices: Iterable[str] = ()) -> dict:
    """The `scope` of an export narrowed to these rule sets and devices: only they are
    covered. The objects, device groups and the other rule sets the export carries (so its
    references resolve) are context, never pruned by importing it."""
    return {
        kind: sorted(set(names))
        for kind, names in (("rulesets", list(rulesets)), ("devices", list(devices)))
        if names
    }


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented under their key (as people write YAML by hand)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


def _represent_list(dumper: _Dumper, data: list) -> yaml.Node:
    """Lists of names, ports, states on one line (`members: [web-1, 198.18.1.11]`), as
    POLICY-FORMAT.md writes them; lists of mappings (rules) in block style."""
    flow = all(isinstance(item, (str, int, float, bool)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def render(document: dict, fmt: str = "yaml") -> str:
    """The document as YAML or JSON text (deterministic: same policy, same bytes)."""
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt != "yaml":
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    body = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return "# Rampart policy document (POLICY-FORMAT.md)\n" + body
