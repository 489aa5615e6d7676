"""Writing a rule's reference rows (sources, destinations, services) in bulk, and the audit
entries those raw inserts need since they send no signals."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.audit.choices import AuditAction
from core.audit.services import record_objects
from rules.models import Rule, RuleAddress, RuleService
from rules.services.rows import insert_model_rows


def save_links(
    rules_links: Iterable[tuple[Rule, tuple[list[RuleAddress], list[RuleService]]]],
) -> None:
    """Insert the link rows `rule_build` returned for these (saved) rules, and audit them."""
    rules_links = list(rules_links)
    addresses, services = [], []
    for rule, (addr_links, svc_links) in rules_links:
        for link in addr_links:
            link.rule = rule
        for link in svc_links:
            link.rule = rule
        addresses += addr_links
        services += svc_links
    insert_model_rows(RuleAddress, addresses)
    insert_model_rows(RuleService, services)
    audit_rule_refs(rules_links)


def mark_created(rules: Iterable[Any]) -> None:
    """Rules inserted raw (no signals): `audit_rule_refs` records their creation, references
    included, in one entry each."""
    for rule in rules:
        rule._audit_created = True


def audit_rule_refs(rules_links: Iterable[tuple[Any, tuple[list, list]]]) -> None:
    """One entry per rule whose references were (re)written by raw inserts: its sources,
    destinations and services by name (link rows inserted in bulk have no ids of their own).
    Rules marked by `mark_created` get a full "create" entry instead."""
    created: list[Any] = []
    updated: list[Any] = []
    refs: dict[int, dict[str, list[str]]] = {}
    for rule, (addr_links, svc_links) in rules_links:
        refs[rule.pk] = {
            "sources": [link.ref for link in addr_links if link.side == "src"],
            "destinations": [link.ref for link in addr_links if link.side == "dst"],
            "services": [link.ref for link in svc_links],
        }
        (created if getattr(rule, "_audit_created", False) else updated).append(rule)
    record_objects(AuditAction.CREATE, created, after=refs)
    record_objects(
        AuditAction.UPDATE,
        updated,
        after=refs,
        fields=(),
        name_of=lambda r: f"{r.ruleset.name} rule {r.uuid}",
    )
