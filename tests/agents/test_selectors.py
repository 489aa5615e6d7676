"""Reads of the fleet: rule usage from the stored counters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents import selectors, services
from tests.support.deploy import make_device

pytestmark = pytest.mark.django_db


def test_unused_rules_report(policy):
    ruleset, group = policy
    device = make_device("web-1", group=group)
    used, idle = list(ruleset.rules.order_by("position"))
    now = timezone.now()
    services.counters_ingest(
        device=device,
        counters={
            str(used.uuid): {"packets": 5, "bytes": 50},
            str(idle.uuid): {"packets": 0, "bytes": 0},
        },
        at=now,
    )
    report = selectors.unused_rules(since=now - timedelta(days=7))
    assert [r["rule"] for r in report] == [str(idle.uuid)]
    assert report[0]["counted_since"] is not None and report[0]["last_hit_at"] is None
