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
from rules.models import AddressGroup, Rule, ServiceGroup


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
