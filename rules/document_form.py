"""One rule and one NAT rule in document form (POLICY-FORMAT.md): what exports, revision
snapshots and the models' own validation (`Model.clean` runs the compiler's parser on it)
read. Plain functions of plain values: no queries, so the models can use them too."""

from __future__ import annotations

from typing import Any

RULE_TEXT_FIELDS = (
    "protocol",
    "dports",
    "sports",
    "icmp_type",
    "in_interface",
    "out_interface",
    "in_zone",
    "out_zone",
    "states",
    "log_prefix",
    "rate_limit",
    "comment",
    "reject_with",
    "rate_limit_per_source",
)
RULE_FLAGS = ("sources_negate", "destinations_negate", "log")
RULE_COLUMNS = (
    "id",
    "ruleset_id",
    "uuid",
    "chain",
    "action",
    "enabled",
    "burst",
    "expires_at",
    *RULE_TEXT_FIELDS,
    *RULE_FLAGS,
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
    for key in RULE_TEXT_FIELDS:
        if row[key]:
            d[key] = row[key]
    for key in RULE_FLAGS:
        if row[key]:
            d[key] = True
    if row["burst"] is not None:
        d["burst"] = row["burst"]
    if not row["enabled"]:
        d["enabled"] = False
    if row["expires_at"]:
        d["expires_at"] = row["expires_at"].isoformat().replace("+00:00", "Z")
    return d


def nat_dict(nat: Any) -> dict:
    """A NAT rule (a row or an unsaved model) in document form: defaults left out."""
    d: dict = {"id": str(nat.uuid), "type": nat.type}
    for key in (
        "chain",
        "in_interface",
        "out_interface",
        "in_zone",
        "out_zone",
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
