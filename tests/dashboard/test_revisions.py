"""Revision pages: diff, rollback and approval."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rules.models import (
    RevisionStatus,
)

from .helpers import HX, positions, small_policy

pytestmark = pytest.mark.django_db


def test_revision_diff_rollback_and_approval(client, users):
    ruleset = small_policy()
    client.force_login(users["operator"])
    first = ruleset.revisions.order_by("number").last()
    client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {"chain": "input", "action": "drop", "comment": "late addition", "enabled": "on"},
        **HX,
    )
    latest = ruleset.revisions.order_by("number").last()
    page = client.get(reverse("dashboard:revision", args=[latest.pk])).content.decode()
    assert "+ added" in page and "late addition" in page
    client.post(reverse("dashboard:revision-rollback", args=[first.pk]), {"message": "undo"})
    assert "late addition" not in positions(ruleset)
    assert ruleset.revisions.order_by("number").last().message == "undo"

    # Four eyes: the operator's edit waits; the operator cannot review, an approver can.
    ruleset.requires_approval = True
    ruleset.save()
    client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {"chain": "input", "action": "drop", "comment": "needs review", "enabled": "on"},
        **HX,
    )
    pending = ruleset.revisions.get(status=RevisionStatus.PENDING)
    assert f"r{pending.number}" in client.get(reverse("dashboard:approvals")).content.decode()
    assert (
        client.post(
            reverse("dashboard:revision-review", args=[pending.pk]), {"decision": "approve"}
        ).status_code
        == 403
    )
    client.force_login(users["approver"])
    refused = client.post(
        reverse("dashboard:revision-review", args=[pending.pk]), {"decision": "reject"}, follow=True
    )
    assert "say why" in refused.content.decode()
    client.post(
        reverse("dashboard:revision-review", args=[pending.pk]),
        {"decision": "approve", "comment": "ok"},
    )
    pending.refresh_from_db()
    assert pending.status == RevisionStatus.APPROVED and pending.reviewer_name == "approver"
