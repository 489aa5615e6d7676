"""The compiled views: the packet tracer and the rule set preview with its diff."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.services import deploy_create
from dashboard.compiled import device_preview

from .helpers import HX, device_with, small_policy

pytestmark = pytest.mark.django_db


def test_tracer_names_the_deciding_rule(operator_client):
    ruleset = small_policy()
    device = device_with(ruleset)
    url = reverse("dashboard:tracer")
    page = operator_client.get(
        url,
        {
            "device": device.pk,
            "target": "candidate",
            "chain": "input",
            "protocol": "tcp",
            "state": "new",
            "source": "198.18.9.9",
            "destination": "198.18.0.2",
            "dport": "443",
        },
    ).content.decode()
    assert 'data-testid="trace-result"' in page and "action-drop" in page and "rule #3" in page
    page = operator_client.get(
        url,
        {
            "device": device.pk,
            "target": "candidate",
            "chain": "input",
            "protocol": "tcp",
            "state": "new",
            "source": "198.18.0.9",
            "destination": "198.18.0.2",
            "dport": "443",
        },
    ).content.decode()
    assert "action-accept" in page and "rule #1" in page
    bad = operator_client.get(
        url,
        {
            "device": device.pk,
            "target": "candidate",
            "chain": "input",
            "protocol": "icmp",
            "state": "new",
            "source": "198.18.0.9",
            "destination": "2001:2::1",
            "dport": "80",
        },
    ).content.decode()
    assert "different families" in bad and 'data-testid="trace-result"' not in bad


def test_tracer_form_takes_the_hop_limit(operator_client):
    """The form's hop limit reaches the tracer: a routed neighbour solicitation is not the
    system ND accept's; a bad one is named on its field."""
    device = device_with(small_policy())
    url = reverse("dashboard:tracer")
    packet = {
        "device": device.pk,
        "target": "candidate",
        "chain": "input",
        "protocol": "icmpv6",
        "state": "",  # the form's default: as conntrack gives it (untracked for ND)
        "source": "2001:2::9",
        "destination": "2001:2::1",
        "icmp_type": "135",
    }
    on_link = operator_client.get(url, {**packet, "hop_limit": "255"}).content.decode()
    assert "<code>rpt:sys:icmpv6-nd</code>" in on_link
    routed = operator_client.get(url, {**packet, "hop_limit": "64"}).content.decode()
    assert "<code>rpt:sys:icmpv6-nd</code>" not in routed and "hop limit 64, not 255" in routed
    bad = operator_client.get(url, {**packet, "hop_limit": "300"}).content.decode()
    assert "invalid hop limit" in bad and 'data-testid="trace-result"' not in bad


def test_preview_shows_compiled_bundle_and_diff(operator_client, users):
    ruleset = small_policy()
    device = device_with(ruleset)
    url = reverse("dashboard:ruleset-preview", args=[ruleset.pk])
    page = operator_client.get(url).content.decode()
    assert "nothing deployed yet" in page and "diff-add" in page and "iptables_v4" in page
    assert "*filter" in page and f"Deploy to {device.name}" in page
    # Pretend the worker pushed that bundle and the agent reported it (tests/agents cover
    # the real push): compiled as of the compiling step, as the worker does.
    deployment = deploy_create(user=users["operator"], devices=[device.pk])
    pushed = device_preview(device).hash
    now = timezone.now()
    deployment.device_deployments.update(
        state="confirmed",
        bundle_hash=pushed,
        started_at=now,
        finished_at=now,
        transitions=[{"state": "compiling", "at": now.isoformat()}],
    )
    type(device).objects.filter(pk=device.pk).update(applied_hash=pushed)
    device.refresh_from_db()
    assert "identical to what is deployed" in operator_client.get(url).content.decode()
    operator_client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {
            "chain": "input",
            "action": "reject",
            "sources": "198.18.77.0/24",
            "comment": "new since deploy",
            "enabled": "on",
        },
        **HX,
    )
    page = operator_client.get(url).content.decode()
    assert f"deployment #{deployment.pk}" in page and ">exact<" in page
    added = [
        line
        for line in page.split('class="diff-add"')[1:]
        if "198.18.77.0/24" in line.split("</span>")[0]
    ]
    assert added and "REJECT" in added[0].split("</span>")[0]
    assert (
        'class="diff-del"' not in page
        or "198.18.77.0/24" not in page.split('class="diff-del"')[1].split("</span>")[0]
    )
