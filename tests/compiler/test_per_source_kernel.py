"""`rate_limit_per_source` in a real kernel: the rule loads and reads back as rendered,
a source gets its burst of new connections and no more, and another source still gets
through (its own bucket); a source's bucket is one for all the kernel rules of its policy
rule (native nft: a shared dynamic set, where per-kernel-rule meters let it through once
per kernel rule)."""

from __future__ import annotations

import json
import sys

import pytest

from compiler import PolicyDocument, compile_device
from compiler.render_nft import render_nft
from tests.support.netns import host_pair, needs_netns
from tests.support.udp_tries import SEND

from . import cases
from .kernel import NATIVE, load, rules_by_chain, saved_rules

pytestmark = needs_netns

PORT = 7101
BURST = 3
# connects one after the other from a given source address; 0 = connected
CONNECT = """
import json, socket, sys
out = []
for source, host, port in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.bind((source, 0))
    s.settimeout(0.5)  # a dropped SYN is not retried within it (the retry would count)
    out.append(s.connect_ex((host, port)))
    s.close()
print(json.dumps(out))
"""


def compiled(rule: dict):
    """Device `srv` holding `rule` alone, input dropped by default, compiled at NOW."""
    doc = {
        "version": 1,
        "rulesets": [{"name": "ps", "rules": [rule]}],
        "devices": [{"name": "srv", "rulesets": ["ps"], "default_policy": {"input": "drop"}}],
    }
    return compile_device(PolicyDocument.from_dict(doc), "srv", now=cases.NOW)


def policy():
    return compiled(
        {
            "chain": "input",
            "action": "accept",
            "protocol": "tcp",
            "dports": [str(PORT)],
            "rate_limit_per_source": {"rate": "1/hour", "burst": BURST},
        }
    )


@pytest.mark.parametrize("backend", ["iptables", "nft"])
def test_each_source_gets_its_burst_and_no_more(backend):
    bundle = policy()
    with host_pair("cpps") as (client, server):
        second4 = client.addr4.rsplit(".", 1)[0] + ".3"
        second6 = client.addr6.rsplit(":", 1)[0] + ":3"
        client.run("ip", "addr", "add", f"{second4}/24", "dev", client.dev)  # type: ignore[attr-defined]
        client.run("ip", "-6", "addr", "add", f"{second6}/64", "dev", client.dev, "nodad")  # type: ignore[attr-defined]
        server.listen(tcp=[PORT])
        if backend == "nft":  # the agent's native backend: a dynamic set per rule and family
            server.run("nft", "-f", "-", input=render_nft(bundle.program))
            assert "update @rps" in server.run("nft", "list", "ruleset").stdout
        else:
            load(server, bundle)
            for family, text in ((4, bundle.iptables_v4), (6, bundle.iptables_v6)):
                assert saved_rules(server, family) == rules_by_chain(text)
        for first, second, host in (
            (client.addr4, second4, server.addr4),
            (client.addr6, second6, server.addr6),
        ):
            tries = [(first, host, PORT)] * (BURST + 2) + [(second, host, PORT)]
            got = json.loads(client.run(sys.executable, "-c", CONNECT, json.dumps(tries)).stdout)
            assert [code == 0 for code in got] == [True] * BURST + [False, False, True], got


UDP_PORT = 7102


def two_destinations(hosts: list[str]):
    """One rule, two destination addresses per family (two kernel rules each), logging (a
    LOG twin per kernel rule, with buckets of its own)."""
    return compiled(
        {
            "chain": "input",
            "action": "accept",
            "protocol": "udp",
            "dports": [str(UDP_PORT)],
            "destinations": hosts,
            "rate_limit_per_source": {"rate": "1/hour", "burst": BURST},
            "log": True,
        }
    )


@pytest.mark.parametrize("backend", ["legacy", "nft", NATIVE])
def test_a_source_has_one_bucket_in_all_kernel_rules_of_its_rule(backend):
    """A source sends 5 datagrams to each of the rule's two destinations: BURST get
    through in all (per-kernel-rule buckets: 2 × BURST); another source has its own."""
    with host_pair("cpsd") as (client, server):
        other4 = client.addr4.rsplit(".", 1)[0] + ".3"
        other6 = client.addr6.rsplit(":", 1)[0] + ":3"
        client.run("ip", "addr", "add", f"{other4}/24", "dev", client.dev)  # type: ignore[attr-defined]
        client.run("ip", "-6", "addr", "add", f"{other6}/64", "dev", client.dev, "nodad")  # type: ignore[attr-defined]
        second4 = server.addr4.rsplit(".", 1)[0] + ".4"
        second6 = server.addr6.rsplit(":", 1)[0] + ":4"
        server.run("ip", "addr", "add", f"{second4}/24", "dev", server.dev)  # type: ignore[attr-defined]
        server.run("ip", "-6", "addr", "add", f"{second6}/64", "dev", server.dev, "nodad")  # type: ignore[attr-defined]
        bundle = two_destinations([server.addr4, second4, server.addr6, second6])
        for text in (bundle.iptables_v4, bundle.iptables_v6):  # two kernel rules each
            assert (
                sum("-j ACCEPT" in line and "hashlimit" in line for line in text.splitlines()) == 2
            )
        server.listen(udp=[UDP_PORT])
        load(server, bundle, backend)
        if backend == NATIVE:
            listed = server.run("nft", "list", "table", "inet", "rampart").stdout
            assert listed.count("update @rps") == 8 and "meter" not in listed
        for source, other, hosts in (
            (client.addr4, other4, (server.addr4, second4)),
            (client.addr6, other6, (server.addr6, second6)),
        ):
            tries = [(source, h, UDP_PORT) for h in hosts for _ in range(5)]
            tries.append((other, hosts[1], UDP_PORT))
            got = json.loads(client.run(sys.executable, "-c", SEND, json.dumps(tries)).stdout)
            assert got == [True] * BURST + [False] * (10 - BURST) + [True], got
