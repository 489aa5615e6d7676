"""A 10,000-rule set: the editor pages instead of rendering everything, with a bounded
number of queries whatever page is asked for. (Timing is bench/ui.py's job, not a test's.)"""

from __future__ import annotations

import pytest
from django.urls import reverse

from rules import services
from rules.models import RuleSet

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
N = 10_000


@pytest.fixture
def big_ruleset():
    ruleset = services.object_save(RuleSet(name="big"))
    services.rules_bulk(
        ruleset=ruleset,
        create=[
            {
                "action": "accept" if i % 3 else "drop",
                "sources": [f"198.18.{i // 250}.{i % 250 + 1}"],
                "protocol": "tcp",
                "dports": [str(1000 + i % 5000)],
                "comment": f"r{i + 1}",
            }
            for i in range(N)
        ],
    )
    return ruleset


def rows(page: str) -> int:
    return page.count('<tr id="rule-')


def test_ten_thousand_rules_paginate(client, users, big_ruleset, django_assert_max_num_queries):
    client.force_login(users["operator"])
    url = reverse("dashboard:ruleset", args=[big_ruleset.pk])
    with django_assert_max_num_queries(40):
        first = client.get(url).content.decode()
    assert rows(first) == 100 and "1 / 100" in first and f"{N} rules" in first
    assert "Run analysis" in first  # too big to analyse on every page view
    with django_assert_max_num_queries(40):
        middle = client.get(
            url, {"page": 23, "per": 250}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="rules-table"
        ).content.decode()
    assert rows(middle) == 250 and '<nav class="navbar' not in middle  # the table partial only
    assert ">r5501<" in middle and ">r5750<" in middle
    assert ">r5500<" not in middle and ">r5751<" not in middle
    jump = client.get(url, {"q": "#9999"}).content.decode()
    assert rows(jump) == 1 and ">r9999<" in jump
