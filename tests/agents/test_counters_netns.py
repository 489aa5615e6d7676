"""Exact rule counters with a real agent in an rpt_ namespace and counted real packets.

The console (this process: the device-run and status-poll code the worker runs) deploys
to an agent serving in a namespace and polls it; the test sends a known number of UDP
datagrams per rule (each from its own socket: a new flow, so it reaches the policy rule
past the conntrack shortcut) and checks the console's totals equal what was sent, across
a rule moved and redeployed, an agent restart, a full rewrite of every chain (a repair of
drift), an apply the console did not make, a rule deleted, and a `log: true` rule.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from agents.client import AgentClient
from agents.models import RuleCounter
from agents.services.polling import status_poll
from rampart_agent.state import StateDir
from rules import services as rules_services
from rules.models import DeviceGroup, DeviceGroupRuleSet, Rule, RuleSet
from tests.agents.test_deploy_lockout_netns import NsAgent, agent_namespace, deploy, ns_device
from tests.support.netns import needs_netns

pytestmark = [
    *needs_netns,
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]

PORTS = {"moved": 9001, "logged": 9002, "other": 9003}


def send(agent: NsAgent, port: int, count: int) -> None:
    """`count` UDP datagrams to the agent's host, each a new flow."""
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((agent.console_addr, 0))
            s.sendto(b"x", (agent.addr, port))
    time.sleep(0.2)  # on the wire and through the kernel's rules


def totals(device) -> dict[str, int]:
    by_uuid = {str(c.rule_uuid): c.packets for c in RuleCounter.objects.filter(device=device)}
    rules = Rule.objects.filter(ruleset__name="counted")
    return {r.comment: by_uuid.get(str(r.uuid), 0) for r in rules}


def counted_device(agent: NsAgent):
    """The lockout tests' device (tcp 80, management from the console) and a rule set of
    three udp rules from the console's address, one of them logged."""
    device = ns_device(agent, auto_repair=False)
    ruleset = RuleSet.objects.create(name="counted")
    for name, port in PORTS.items():
        rules_services.rule_create(
            ruleset=ruleset,
            data={
                "chain": "input",
                "action": "accept",
                "protocol": "udp",
                "dports": [str(port)],
                "sources": [f"{agent.console_addr}/32"],
                "comment": name,
                "log": name == "logged",
            },
        )
    group = DeviceGroup.objects.get(name="web-servers")
    DeviceGroupRuleSet.objects.create(group=group, ruleset=ruleset)
    return device


def deployed(device) -> None:
    state, dd = deploy(device)
    assert state == "confirmed", (dd.error, dd.transitions)


def test_totals_equal_the_packets_sent_across_moves_restarts_and_rewrites(tmp_path):
    with agent_namespace(tmp_path) as agent:
        agent.start("nft")
        device = counted_device(agent)
        deployed(device)
        send(agent, PORTS["moved"], 5)
        send(agent, PORTS["logged"], 3)
        send(agent, PORTS["other"], 4)
        status_poll(device_id=device.pk)
        # the logged rule is a LOG rule and an ACCEPT rule with one tag: counted once
        assert totals(device) == {"moved": 5, "logged": 3, "other": 4}

        # hits not polled yet, then the rule moves to the end: its chain is rewritten and
        # the kernel counts it from zero; more hits after the move than before it
        send(agent, PORTS["moved"], 7)
        moved = Rule.objects.get(comment="moved")
        rules_services.rule_move(rule=moved, position=3)
        state, dd = deploy(device)
        assert state == "confirmed", dd.error
        lost = dd.agent_response["counter_reset"]["lost"]
        assert lost[str(moved.uuid)]["packets"] == 12  # the final count of the old rule
        send(agent, PORTS["moved"], 9)
        status_poll(device_id=device.pk)
        assert totals(device) == {"moved": 21, "logged": 3, "other": 4}

        # an agent restart keeps the kernel's rules and their counters
        send(agent, PORTS["other"], 3)
        agent.proc.terminate()
        agent.proc.wait(timeout=10)
        agent.start("nft")
        send(agent, PORTS["other"], 2)
        status_poll(device_id=device.pk)
        assert totals(device) == {"moved": 21, "logged": 3, "other": 9}

        # drift (a rule put above our jump) makes the next apply a full rewrite of every
        # chain: every counter restarts from zero; the unpolled hits before it still count
        send(agent, PORTS["logged"], 4)
        send(agent, PORTS["other"], 1)
        agent.ns.run("iptables-nft", "-I", "INPUT", "1", "-p", "tcp", "--dport", "1", "-j", "DROP")
        assert status_poll(device_id=device.pk)["drifted"]
        send(agent, PORTS["logged"], 2)
        deployed(device)  # the same bundle, rewritten in full (the agent saw the drift)
        assert not status_poll(device_id=device.pk)["drifted"]
        send(agent, PORTS["logged"], 1)
        # an apply whose answer the console never saw: the status repeats its reset
        agent.ns.run("iptables-nft", "-I", "INPUT", "1", "-p", "tcp", "--dport", "1", "-j", "DROP")
        status_poll(device_id=device.pk)
        send(agent, PORTS["other"], 6)
        assert apply_elsewhere(agent, device)["counter_reset"]["lost"]
        send(agent, PORTS["other"], 1)
        status_poll(device_id=device.pk)
        assert totals(device) == {"moved": 21, "logged": 3 + 4 + 2 + 1, "other": 9 + 1 + 6 + 1}

        # a rule deleted with hits not polled yet: its final count comes with the apply
        send(agent, PORTS["moved"], 3)
        rules_services.rule_delete(rule=moved)
        deployed(device)
        assert RuleCounter.objects.get(device=device, rule_uuid=moved.uuid).packets == 24


def apply_elsewhere(agent: NsAgent, device) -> dict:
    """An apply the console's device run never sees (as from another console): the
    bundle the agent holds, again, through the agent's API."""
    client = AgentClient.for_device(device)
    applied = client.status()["applied"]
    raw = json.loads(StateDir(agent.state).bundle_file(applied["hash"]).read_bytes())
    return client.apply(
        bundle={**raw, "hash": applied["hash"]},
        version=applied["version"] + 1,
        deployment="elsewhere",
        confirm_timeout=0,
    )
