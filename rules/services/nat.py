"""Writes of NAT rules beyond `object_save`: where a new one goes in its rule set."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from rules.models import NatRule
from rules.services.objects import object_save


@transaction.atomic
def nat_rule_create(*, nat: NatRule, position: int | None = None) -> NatRule:
    """Save a new NAT rule at `position` (0-based), or after the last of its rule set."""
    if position is None:
        last = nat.ruleset.nat_rules.aggregate(m=Max("position"))["m"]
        position = 0 if last is None else last + 1
    nat.position = position
    return object_save(nat)
