"""Rolling a rule set back to a revision."""

from __future__ import annotations

import pytest

from core.audit.models import AuditEntry
from rules import revisions, services
from rules.models import (
    AddressObject,
)
from rules.revisions.rollback import revision_rollback
from tests.rules.revisions.support import latest

pytestmark = pytest.mark.django_db


def test_rollback_restores_rows_and_records_a_new_revision(policy):
    rs = policy
    services.rule_create(
        ruleset=rs, data={"destinations": ["web"], "services": ["https"], "comment": "keep"}
    )
    good = latest(rs)
    services.rules_bulk(ruleset=rs, create=[{"action": "drop"}], delete=[rs.rules.get().pk])
    assert latest(rs).hash != good.hash
    new = revision_rollback(revision=good)
    assert (
        new.hash == good.hash
        and new.number == good.number + 2
        and new.parent.number == good.number + 1
    )
    # rows are back, same uuids
    assert revisions.ruleset_snapshot(rs) == revisions.revision_snapshot(good)
    assert AuditEntry.objects.filter(action="revision_rollback", object_id=str(new.pk)).exists()
    assert rs.revisions.count() == good.number + 2  # the restore itself made no extra revisions


def test_a_deleted_object_comes_back_on_rollback(policy):
    rs = policy
    services.object_save(AddressObject(name="tmp", value="198.18.9.9"))
    rule = services.rule_create(ruleset=rs, data={"sources": ["tmp"]})
    old = latest(rs)
    services.rule_delete(rule=rule)
    services.object_delete(AddressObject.objects.get(name="tmp"))
    revision_rollback(revision=old)
    assert AddressObject.objects.get(name="tmp").value == "198.18.9.9"
    assert revisions.ruleset_snapshot(rs) == revisions.revision_snapshot(old)
