"""Four-eyes on device settings, with real packets: an operator's change of a device's input
default cannot reach the kernel of the agent (a real `rampart-agent serve` in an rpt_
namespace) until another user approves it.

The probe is a TCP connect from the console's namespace to a port nothing listens on: a
dropping policy lets it time out, an accepting one lets the kernel answer with a reset.
"""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse

from rules import revisions
from rules import services as rule_services
from rules.models import RuleSet
from tests.agents.test_deploy_lockout_netns import agent_namespace, deploy, ns_device
from tests.support.netns import needs_netns

pytestmark = [
    *needs_netns,
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]

CLOSED_PORT = 9


def verdict(addr: str) -> str:
    """`accept` when the kernel let a new TCP connection to a closed port in (reset), `drop`
    when it was dropped (no answer)."""
    try:
        socket.create_connection((addr, CLOSED_PORT), timeout=1.5).close()
        return "open"
    except ConnectionRefusedError:
        return "accept"
    except TimeoutError:
        return "drop"


def test_an_unapproved_device_change_never_reaches_the_kernel(tmp_path, users, api_client_for):
    with agent_namespace(tmp_path) as agent:
        agent.start("nft")
        device = ns_device(agent)  # rule set `web`, input default drop
        ruleset = RuleSet.objects.get(name="web")
        ruleset.requires_approval = True
        rule_services.object_save(ruleset)
        revisions.revision_approve(
            revision=ruleset.revisions.order_by("-number").first(), reviewer=users["approver"]
        )
        state, dd = deploy(device)
        assert state == "confirmed", dd.error
        assert verdict(agent.addr) == "drop"

        operator = api_client_for(users["operator"])
        url = reverse("device-detail", args=[device.pk])
        asked = operator.patch(url, {"default_policy": {"input": "accept"}}, format="json")
        assert asked.status_code == 202, asked.data
        state, dd = deploy(device)  # the operator deploys at once, without approval
        assert state in ("confirmed", "unchanged"), dd.error
        assert verdict(agent.addr) == "drop"  # the kernel still drops

        approve = reverse("devicechange-approve", args=[asked.data["id"]])
        assert operator.post(approve, {}, format="json").status_code == 403  # not their own
        done = api_client_for(users["approver"]).post(approve, {"comment": "ok"}, format="json")
        assert done.status_code == 200, done.data
        state, dd = deploy(device)
        assert state == "confirmed", dd.error
        assert verdict(agent.addr) == "accept"  # now, and only now
