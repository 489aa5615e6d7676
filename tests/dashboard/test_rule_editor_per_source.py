"""The rule editor's per-source rate limit fields: composed into rate_limit_per_source,
the kernel bounds' words shown when refused."""

from __future__ import annotations

import pytest
from django.urls import reverse

from .helpers import HX, small_policy

pytestmark = pytest.mark.django_db
LIMIT = {"rate": "6/minute", "burst": 3, "ipv4_prefix": 24}


def test_rule_editor_composes_the_limit(operator_client):
    ruleset = small_policy()
    fields = {
        "chain": "input",
        "action": "accept",
        "protocol": "tcp",
        "dports": "22",
        "comment": "ssh limited",
        "enabled": "on",
        "per_source_rate": "6/minute",
        "per_source_burst": "3",
        "per_source_ipv4_prefix": "24",
    }
    response = operator_client.post(reverse("dashboard:rule-new", args=[ruleset.pk]), fields, **HX)
    assert response.status_code == 200
    rule = ruleset.rules.get(comment="ssh limited")
    assert rule.rate_limit_per_source == LIMIT
    response = operator_client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {**fields, "comment": "too slow", "per_source_rate": "1/day", "per_source_burst": "10"},
        **HX,
    )
    assert "interval × burst at most 111848 s" in response.content.decode()
    assert not ruleset.rules.filter(comment="too slow").exists()
