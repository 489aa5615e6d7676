"""The policy document of POLICY-FORMAT.md as plain, validated values.

The database (through `rules.selectors.policy_dict`), YAML files and CI all hand the
compiler the same dict form, and `PolicyDocument.from_dict` is the one parser of it:
unknown keys, bad names, duplicate names, unknown references, group cycles, mixed-family
rules and ports where no ports can be are all reported, each with a path such as
`rulesets[web-baseline].rules[3].dports[0]` (list indices are 0-based) and the rule's id.
`to_dict()` gives the canonical form, so `from_dict(to_dict(doc)) == doc`.

Modules: model (the parts), policy (`PolicyDocument`), parser and parse_* (one per part),
serialise (dict form), ids (fallback rule ids), times, literals (NAT targets, families).
"""

from __future__ import annotations

from .ids import FALLBACK_NS, fallback_ids, fallback_rule_id
from .literals import parse_literal, parse_nat_target, protocol_families
from .model import (
    DEFAULT_POLICY,
    FAMILIES_ALL,
    NAT_CHAINS,
    NAT_TYPES,
    AddressGroup,
    AddressObject,
    Assertion,
    Device,
    DeviceGroup,
    NatRule,
    Probe,
    Rule,
    RuleSet,
    Service,
    ServiceGroup,
    Zone,
)
from .policy import PolicyDocument
from .serialise import rule_dict
from .times import format_datetime, parse_datetime

__all__ = [
    "DEFAULT_POLICY",
    "FALLBACK_NS",
    "FAMILIES_ALL",
    "NAT_CHAINS",
    "NAT_TYPES",
    "AddressGroup",
    "AddressObject",
    "Assertion",
    "Device",
    "DeviceGroup",
    "NatRule",
    "PolicyDocument",
    "Probe",
    "Rule",
    "RuleSet",
    "Service",
    "ServiceGroup",
    "Zone",
    "fallback_ids",
    "fallback_rule_id",
    "format_datetime",
    "parse_datetime",
    "parse_literal",
    "parse_nat_target",
    "protocol_families",
    "rule_dict",
]
