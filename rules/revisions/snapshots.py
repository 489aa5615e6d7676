"""A rule set's content as a revision stores it: its document form plus every object it
refers to, transitively, so an old revision still means what was approved after the shared
objects changed. Hashed in the one canonical JSON form."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from compiler import values
from rampart_contract.canonical import canonical_json
from rules.models import RuleSet
from rules.selectors import policy_dict

OBJECT_KINDS = ("addresses", "address_groups", "services", "service_groups")


def snapshot_hash(snapshot: dict) -> str:
    """sha256 of the canonical (sorted-key, compact) JSON of a snapshot."""
    return hashlib.sha256(canonical_json(snapshot, default=str)).hexdigest()


def _names(refs: Iterable[str]) -> set[str]:
    return {r for r in refs if isinstance(r, str) and not values.is_literal(r)}


def _wanted(rs: dict) -> tuple[set[str], set[str]]:
    """The address and service names a rule set's rules and NAT rules refer to directly."""
    want_a: set[str] = set()
    want_s: set[str] = set()
    for rule in rs.get("rules", []):
        want_a |= _names(rule.get("sources", [])) | _names(rule.get("destinations", []))
        want_s |= _names(rule.get("services", []))
    for nat in rs.get("nat", []):
        want_a |= _names(nat.get("sources", [])) | _names(nat.get("destinations", []))
    return want_a, want_s


def _closure(wanted: set[str], groups: dict[str, dict], items: dict[str, dict]) -> set[str]:
    """`wanted` plus every object or group name reachable through the members of the groups
    among them (members are matched against the names, never parsed: a group may hold
    100,000 literals)."""
    seen: set[str] = set()
    stack = sorted(wanted)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in groups:
            members = set(groups[name].get("members", []))  # set operations, in C
            stack.extend(sorted(((members & groups.keys()) | (members & items.keys())) - seen))
    return seen


def _zones_used(rs: dict) -> set[str]:
    return {
        item[key]
        for item in (*rs.get("rules", []), *rs.get("nat", []))
        for key in ("in_zone", "out_zone")
        if item.get(key)
    }


def snapshots_of(doc: dict) -> dict[str, dict]:
    """Rule set name → snapshot, cut out of one policy document. Zones the rule set uses are
    part of it (key present only when it uses any: older snapshots keep their hashes)."""
    objects = {kind: {o["name"]: o for o in doc.get(kind, [])} for kind in OBJECT_KINDS}
    zones = {z["name"]: z for z in doc.get("zones", [])}
    out = {}
    for rs in doc["rulesets"]:
        want_a, want_s = _wanted(rs)
        snap: dict[str, Any] = {"ruleset": rs}
        used_zones = sorted(n for n in _zones_used(rs) if n in zones)
        if used_zones:
            snap["zones"] = [zones[n] for n in used_zones]
        for item_kind, group_kind, wanted in (
            ("addresses", "address_groups", want_a),
            ("services", "service_groups", want_s),
        ):
            items, groups = objects[item_kind], objects[group_kind]
            seen = _closure(wanted, groups, items)
            snap[item_kind] = [items[n] for n in sorted(seen) if n in items]
            snap[group_kind] = [groups[n] for n in sorted(seen) if n in groups]
        out[rs["name"]] = snap
    return out


def ruleset_snapshot(ruleset: RuleSet) -> dict:
    """The rule set's content now: its document form and every object it refers to."""
    return snapshots_of(policy_dict(rulesets=[ruleset], referenced_objects=True))[ruleset.name]
