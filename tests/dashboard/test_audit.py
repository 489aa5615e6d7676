"""The audit log page: filters and exports."""

from __future__ import annotations

import pytest
from django.urls import reverse

from .helpers import HX, small_policy

pytestmark = pytest.mark.django_db


def test_audit_page_filters_and_exports(operator_client):
    ruleset = small_policy()
    operator_client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {"chain": "input", "action": "drop", "comment": "audited", "enabled": "on"},
        **HX,
    )
    url = reverse("dashboard:audit")
    page = operator_client.get(url, {"actor": "operator"}).content.decode()
    assert "operator" in page and "rules.rule" in page
    assert "No entries match" in operator_client.get(url, {"actor": "nobody"}).content.decode()
    bad = operator_client.get(url, {"since": "yesterday"}).content.decode()
    assert "alert-danger" in bad
    export = operator_client.get(
        reverse("dashboard:audit-export"), {"format": "csv", "actor": "operator"}
    )
    text = b"".join(export.streaming_content).decode()
    assert text.startswith("seq,time,actor") and ",operator," in text
    assert "system" not in {line.split(",")[2] for line in text.splitlines()[1:]}
