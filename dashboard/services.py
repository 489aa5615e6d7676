"""Dashboard actions that need more than one rules.services call.

The UI never writes rows itself: each function here only sequences the shared services
inside one transaction (and one revision batch), so the action happens completely or not
at all, and every check, audit entry and revision capture of the services still runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction

from rules import revisions, services
from rules.models import AddressGroup, Rule, RuleSet, ServiceGroup


@transaction.atomic
def rule_place(*, rule: Rule, before: Rule | None = None, after: Rule | None = None) -> int:
    """Move `rule` next to a neighbour (what a drag-and-drop reports); returns its new position.

    Positions are contiguous (services.renumber keeps them 1..n), so the target follows
    from the neighbour's position and the direction of the move. Working from neighbours
    rather than row indices keeps dragging right on filtered and paginated views.
    """
    if (before is None) == (after is None):
        raise ValidationError({"position": ["drop the rule before or after another rule"]})
    anchor = before or after
    assert anchor is not None  # exactly one of them, checked above
    if anchor.ruleset_id != rule.ruleset_id or anchor.pk == rule.pk:
        raise ValidationError(
            {"position": ["the neighbour must be another rule of the same rule set"]}
        )
    moving_down = rule.position < anchor.position
    if before is not None:
        target = anchor.position - 1 if moving_down else anchor.position
    else:
        target = anchor.position if moving_down else anchor.position + 1
    if target != rule.position:
        services.rule_move(rule=rule, position=target)
    return target


@transaction.atomic
def rule_drop(
    *, ruleset: RuleSet, rule_id: int, before_id: int | None = None, after_id: int | None = None
) -> int:
    """`rule_place` by row ids as the browser reports them; returns the rule's new position.

    Ids of another rule set are treated as unknown, so a stale page cannot move their rules.
    """
    rules = ruleset.rules.in_bulk([v for v in (rule_id, before_id, after_id) if v])
    rule = rules.get(rule_id)
    if rule is None:
        raise ValidationError({"rule": ["no such rule in this rule set (reload the page)"]})
    return rule_place(rule=rule, before=rules.get(before_id or 0), after=rules.get(after_id or 0))


BULK_ACTIONS = ("enable", "disable", "delete", "move")


@transaction.atomic
def rules_bulk_action(
    *, ruleset: RuleSet, action: str, rule_ids: Sequence[int], position: int | None = None
) -> int:
    """Enable, disable, delete or move the selected rules as one `rules.services.rules_bulk`
    call; `move` places them, in their current order, from `position` on. Returns how many."""
    if action in ("enable", "disable"):
        services.rules_bulk(
            ruleset=ruleset, update=[{"id": pk, "enabled": action == "enable"} for pk in rule_ids]
        )
    elif action == "delete":
        services.rules_bulk(ruleset=ruleset, delete=list(rule_ids))
    elif action == "move" and position:
        chosen = set(rule_ids)
        current = list(ruleset.rules.order_by("position", "id").values_list("id", flat=True))
        picked = [pk for pk in current if pk in chosen]
        rest = [pk for pk in current if pk not in chosen]
        at = min(position, len(rest) + 1) - 1
        services.rules_bulk(ruleset=ruleset, order=rest[:at] + picked + rest[at:])
    else:
        raise ValidationError({"action": [f"unknown bulk action {action!r} (or no position)"]})
    return len(rule_ids)


@revisions.batched
@transaction.atomic
def address_group_save(*, group: AddressGroup, members: Sequence[str]) -> AddressGroup:
    """Save a group and its members together (a bad member leaves no half-made group)."""
    services.object_save(group)
    services.address_group_set_members(group=group, members=members)
    return group


@revisions.batched
@transaction.atomic
def service_group_save(*, group: ServiceGroup, members: Sequence[str]) -> ServiceGroup:
    services.object_save(group)
    services.service_group_set_members(group=group, members=members)
    return group


@revisions.batched
@transaction.atomic
def group_save_changing_members(
    *, group: AddressGroup | ServiceGroup, add: Sequence[str], remove: Sequence[str]
) -> AddressGroup | ServiceGroup:
    """Save a group and add/remove some of its members (a large group's form)."""
    services.object_save(group)
    services.group_members_change(group=group, add=add, remove=remove)
    return group
