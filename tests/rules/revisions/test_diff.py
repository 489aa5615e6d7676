"""Diffs between revisions: rules matched by id."""

from __future__ import annotations

import pytest

from rules import revisions, services
from rules.models import (
    Rule,
)
from tests.rules.revisions.support import latest

pytestmark = pytest.mark.django_db


def test_diff_reports_added_removed_changed_and_moved(policy):
    rs = policy
    a = services.rule_create(ruleset=rs, data={"comment": "a"})
    b = services.rule_create(ruleset=rs, data={"comment": "b"})
    c = services.rule_create(ruleset=rs, data={"comment": "c"})
    old = latest(rs)
    services.rule_update(rule=b, data={"action": "drop", "services": ["https"]})
    services.rule_delete(rule=a)
    services.rule_move(rule=Rule.objects.get(pk=c.pk), position=1)
    d = services.rule_create(ruleset=rs, data={"comment": "d"})
    diff = revisions.revision_diff(old, latest(rs))
    rules = diff["rules"]
    assert [x["id"] for x in rules["added"]] == [str(d.uuid)]
    assert [x["id"] for x in rules["removed"]] == [str(a.uuid)]
    assert rules["changed"] == [
        {
            "id": str(b.uuid),
            "fields": ["action", "services"],
            "before": {"action": "accept", "services": None},
            "after": {"action": "drop", "services": ["https"]},
        }
    ]
    assert [(m["id"], m["from"], m["to"]) for m in rules["moved"]] in (
        [(str(c.uuid), 3, 1)],
        [(str(b.uuid), 2, 2)],
    )
    assert diff["objects"]["services"]["added"] == ["https"]
    assert not diff["identical"]
