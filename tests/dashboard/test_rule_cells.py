"""The rule table's cells (dashboard.templatetags.rule_cells): escaped names, negation,
"any", the match, option badges and findings, from a RuleRow's data alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard.selectors.rulesets import RuleRow
from dashboard.templatetags import rule_cells
from rules.models import Rule

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def row(**fields) -> RuleRow:
    refs = {k: fields.pop(k) for k in ("sources", "destinations", "services") if k in fields}
    findings = fields.pop("findings", [])
    return RuleRow(Rule(**fields), findings=findings, now=NOW, **refs)


def test_address_cells_escape_names_and_show_negation_and_any():
    cell = rule_cells.source_cell(row(sources=["office", "<lab>"], sources_negate=True))
    assert cell == (
        '<span class="neg" title="not">!</span>'
        '<span class="ref">office</span><span class="ref">&lt;lab&gt;</span>'
    )
    assert rule_cells.destination_cell(row()) == '<span class="any">any</span>'
    assert rule_cells.destination_cell(row(destinations_negate=True)) == (
        '<span class="neg" title="not">!</span><span class="any">any</span>'
    )


def test_service_cell_shows_services_then_the_literal_match():
    assert rule_cells.service_cell(row()) == '<span class="any">any</span>'
    assert rule_cells.service_cell(row(services=["web"])) == '<span class="ref svc">web</span>'
    cell = rule_cells.service_cell(row(protocol="tcp", dports=["443", "8000-8100"]))
    assert cell == '<span class="font-monospace small match">tcp dport 443,8000-8100</span>'


def test_iface_and_option_cells():
    r = row(in_interface="eth0", states=["new"], log=True, rate_limit="10/second")
    assert rule_cells.iface_cell(r) == "in eth0 new"
    options = rule_cells.options_cell(r)
    assert 'text-bg-info">log<' in options and ">10/second<" in options
    soon = rule_cells.options_cell(row(expires_at=NOW + timedelta(days=2, hours=3)))
    assert "expires in 2\xa0days<" in soon and "text-bg-warning" in soon
    minutes = rule_cells.options_cell(row(expires_at=NOW + timedelta(minutes=25)))
    assert "expires in 25\xa0minutes<" in minutes
    later = rule_cells.options_cell(row(expires_at=NOW + timedelta(days=30)))
    assert ">expires 2027-01-05<" in later and "text-bg-warning" not in later
    past = rule_cells.options_cell(row(expires_at=NOW - timedelta(days=1)))
    assert ">expired<" in past and "text-bg-secondary" in past


def test_row_classes_and_findings():
    finding = {"kind": "shadowed", "severity": "warning", "message": "is <shadowed>"}
    r = row(enabled=False, expires_at=NOW - timedelta(minutes=1), findings=[finding])
    assert rule_cells.rule_css(r) == "rule-disabled rule-expired finding-shadowed"
    assert rule_cells.rule_css(row(enabled=True)) == ""
    assert rule_cells.findings_cell(r) == (
        '<div class="finding finding-shadowed sev-warning" role="note" '
        'data-finding="shadowed">&#9888; is &lt;shadowed&gt;</div>'
    )
