"""The tracer's NAT steps through the API and the dashboard: a DNAT of a port of the device
to another host is traced into FORWARD, and both show the step that rewrote it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rules.models import NatRule
from rules.services.nat import nat_rule_create

from .helpers import device_with, small_policy

pytestmark = pytest.mark.django_db

PACKET = {
    "target": "candidate",
    "chain": "input",
    "protocol": "tcp",
    "state": "new",
    "source": "198.18.0.9",
    "destination": "198.18.0.2",  # the device's address
    "dport": "8443",
}


@pytest.fixture
def published():
    """web's device with tcp 8443 DNATed to web-1:443 (the office may reach 443)."""
    ruleset = small_policy()
    nat_rule_create(
        nat=NatRule(
            ruleset=ruleset, type="dnat", protocol="tcp", dports=["8443"], to="198.18.1.10:443"
        )
    )
    return device_with(ruleset)


def test_api_trace_names_the_dnat_step_and_the_chain(published, api_client_for, users):
    api = api_client_for(users["viewer"])
    url = reverse("device-trace", args=[published.pk])
    body = api.get(url, PACKET).data
    assert body["target"] == "candidate" and body["chain"] == "forward"
    (step,) = body["nat"]
    assert (step["hook"], step["target"], step["before"], step["after"]) == (
        "PREROUTING",
        "DNAT",
        "198.18.0.2:8443",
        "198.18.1.10:443",
    )
    # DNAT to one of the device's own addresses (given as local_addresses): stays local
    local = api.get(url, {**PACKET, "local_addresses": "198.18.1.10, 198.18.5.0/24"}).data
    assert local["chain"] == "input" and local["nat"][0]["after"] == "198.18.1.10:443"
    bad = api.get(url, {**PACKET, "local_addresses": "nope", "dport": "x"})
    assert bad.status_code == 400 and set(bad.data) == {"local_addresses", "dport"}


def test_dashboard_tracer_shows_the_nat_steps(published, operator_client):
    page = operator_client.get(
        reverse("dashboard:tracer"), {"device": published.pk, **PACKET}
    ).content.decode()
    assert 'data-testid="trace-nat"' in page and "PREROUTING DNAT" in page
    assert "198.18.0.2:8443 → 198.18.1.10:443" in page
    assert "Filter chain: <code>FORWARD</code>" in page
    bad = operator_client.get(
        reverse("dashboard:tracer"), {"device": published.pk, **PACKET, "local_addresses": "x"}
    ).content.decode()
    assert "invalid address" in bad and 'data-testid="trace-result"' not in bad
