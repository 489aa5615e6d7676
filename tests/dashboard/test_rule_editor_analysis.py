"""Live analysis in the rule editor (the HTMX side of agents.draft_analysis): the draft's
findings render, a half-typed rule renders none and no error, editors only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.audit.models import AuditEntry
from rules.models import Rule, RuleSet
from tests.support.draft_policy import edge_and_base

from .helpers import HX

pytestmark = pytest.mark.django_db


@pytest.fixture
def edge() -> RuleSet:
    return edge_and_base()


def _form(**fields) -> dict:
    return {"chain": "input", "action": "accept", "enabled": "on", **fields}


def _analyse(client, ruleset, data, rule=None):
    url = (
        reverse("dashboard:rule-analyse", args=[ruleset.pk, rule.pk])
        if rule
        else reverse("dashboard:rule-analyse-new", args=[ruleset.pk])
    )
    response = client.post(url, data, **HX)
    assert response.status_code == 200
    return response.content.decode()


def test_editor_analysis_shows_shadow_and_device_findings(operator_client, edge):
    audit_before = AuditEntry.objects.count()
    draft = _form(action="drop", sources="198.18.0.7", protocol="tcp", dports="22")
    html = _analyse(operator_client, edge, draft)
    assert 'data-kind="shadowed" data-source="ruleset"' in html
    assert "edge rule 1" in html
    html = _analyse(operator_client, edge, {**draft, "position": "1"})
    assert 'data-kind="shadowed"' not in html and "As rule #1" in html
    html = _analyse(
        operator_client, edge, _form(sources="198.18.5.9", protocol="tcp", dports="443")
    )
    assert 'data-source="device"' in html and "on fw-1" in html and "base rule 1" in html
    assert Rule.objects.filter(ruleset=edge).count() == 1
    assert AuditEntry.objects.count() == audit_before


def test_editing_rule_and_half_typed_input(operator_client, edge):
    first = Rule.objects.get(ruleset=edge)
    html = _analyse(operator_client, edge, _form(sources="198.18.0.", protocol="tcp"), first)
    assert "data-kind" not in html
    html = _analyse(operator_client, edge, _form(in_zone="nowhere"))
    assert "data-kind" not in html
    html = _analyse(
        operator_client, edge, _form(sources="198.18.0.0/24", protocol="tcp", dports="22"), first
    )
    assert "As rule #1" in html


def test_viewers_cannot_use_it(client, users, edge):
    client.force_login(users["viewer"])
    viewer_client = client
    url = reverse("dashboard:rule-analyse-new", args=[edge.pk])
    assert viewer_client.post(url, _form(), **HX).status_code in (302, 403)
