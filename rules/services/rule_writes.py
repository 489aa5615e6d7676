"""Writes of single rules: create, update, delete, move, and renumbering a rule set."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from core.audit.services import record_objects
from rules.models import Rule, RuleSet
from rules.revisions.capture import batched, revisions_touch
from rules.services.names import NameIndex
from rules.services.rows import update_rows
from rules.services.rule_build import rule_build
from rules.services.rule_links import save_links


def _next_position(ruleset: RuleSet) -> int:
    return (ruleset.rules.aggregate(m=Max("position"))["m"] or 0) + 1


@transaction.atomic
@batched
def rule_create(*, ruleset: RuleSet, data: dict, position: int | None = None) -> Rule:
    """Create a rule at the end (or at `position`, shifting the rules below it down)."""
    rule, links = rule_build(ruleset=ruleset, data=data, index=NameIndex.load())
    if (data.get("uuid") or data.get("id")) and Rule.objects.filter(uuid=rule.uuid).exists():
        raise ValidationError({"uuid": [f"a rule with id {rule.uuid} already exists"]})
    RuleSet.objects.select_for_update().filter(pk=ruleset.pk).first()
    last = _next_position(ruleset)
    rule.position = last
    rule.save()
    save_links([(rule, links)])
    if position is not None and position != last:
        rule_move(rule=rule, position=position)
        rule.refresh_from_db()
    revisions_touch(rulesets=[ruleset])
    return rule


@transaction.atomic
@batched
def rule_update(*, rule: Rule, data: dict) -> Rule:
    rule, links = rule_build(ruleset=rule.ruleset, data=data, index=NameIndex.load(), rule=rule)
    rule.save()
    if {"sources", "destinations", "services"} & set(data):
        rule.addresses.all().delete()
        rule.service_refs.all().delete()
        save_links([(rule, links)])
    if "position" in data and data["position"] != rule.position:
        rule_move(rule=rule, position=data["position"])
        rule.refresh_from_db()
    revisions_touch(rulesets=[rule.ruleset_id])
    return rule


@transaction.atomic
def rule_delete(*, rule: Rule) -> None:
    ruleset = rule.ruleset
    rule.delete()
    renumber(ruleset=ruleset)
    revisions_touch(rulesets=[ruleset])


def renumber(*, ruleset: RuleSet, order: Sequence[int] | None = None) -> None:
    """Give the rule set's rules positions 1..n (in `order` of rule ids when given)."""
    ids = (
        list(order)
        if order is not None
        else list(ruleset.rules.order_by("position", "id").values_list("id", flat=True))
    )
    rules = {r.pk: r for r in Rule.objects.filter(pk__in=ids).only("id", "position")}
    changed, before = [], {}
    for pos, pk in enumerate(ids, start=1):
        if rules[pk].position != pos:
            before[pk] = {"position": rules[pk].position}
            rules[pk].position = pos
            changed.append(rules[pk])
    update_rows(Rule, changed, ["position"])
    record_objects(
        "update",
        changed,
        before=before,
        fields=["position"],
        name_of=lambda r: f"{ruleset.name} rule {r.pk}",
    )


@transaction.atomic
def rule_move(*, rule: Rule, position: int) -> None:
    """Move a rule to `position` (1-based, clamped), renumbering the others atomically."""
    RuleSet.objects.select_for_update().filter(pk=rule.ruleset_id).first()
    ids = list(
        Rule.objects.filter(ruleset_id=rule.ruleset_id)
        .order_by("position", "id")
        .values_list("id", flat=True)
    )
    if not isinstance(position, int) or position < 1:
        raise ValidationError({"position": ["position must be a whole number from 1"]})
    ids.remove(rule.pk)
    ids.insert(min(position, len(ids) + 1) - 1, rule.pk)
    renumber(ruleset=rule.ruleset, order=ids)
    revisions_touch(rulesets=[rule.ruleset_id])


@transaction.atomic
def rules_reorder(*, ruleset: RuleSet, order: Sequence[int]) -> None:
    """Set the whole order at once; `order` must list every rule id of the set exactly once."""
    RuleSet.objects.select_for_update().filter(pk=ruleset.pk).first()
    current = set(ruleset.rules.values_list("id", flat=True))
    if len(order) != len(set(order)) or set(order) != current:
        raise ValidationError({"order": ["must list every rule id of this rule set exactly once"]})
    renumber(ruleset=ruleset, order=order)
    revisions_touch(rulesets=[ruleset])
