"""`rate_limit` in a real kernel, on iptables-legacy, iptables-nft and native nft: a rule
that becomes two kernel rules per family (two source addresses) lets through its burst in
all, not its burst per kernel rule (the old `-m limit` rendering let through twice as
many); its LOG twin does not take the verdict's tokens; the bounds' extremes load and read
back as rendered."""

from __future__ import annotations

import json
import sys
import time

import pytest

from compiler import PolicyDocument, compile_device
from tests.support.netns import host_pair, namespace, needs_netns
from tests.support.udp_tries import SEND

from . import cases
from .kernel import NATIVE, load, rules_by_chain, saved_rules

pytestmark = needs_netns

PORT = 7201
BURST = 3
TRIES = 5  # per source, one after the other
BACKENDS = ["legacy", "nft", NATIVE]


def policy(sources: list[str], rules: list[dict] | None = None):
    rule = {
        "id": "5d0c4f0e-7a7b-4c1e-9a51-2b8f6f3c1d01",
        "chain": "input",
        "action": "accept",
        "protocol": "udp",
        "dports": [str(PORT)],
        "sources": sources,
        "rate_limit": "1/hour",  # no refill while the test runs
        "burst": BURST,
        "log": True,  # its LOG twin must not take the verdict's tokens
    }
    doc = {
        "version": 1,
        "rulesets": [{"name": "rl", "rules": rules or [rule]}],
        "devices": [{"name": "srv", "rulesets": ["rl"], "default_policy": {"input": "drop"}}],
    }
    return compile_device(PolicyDocument.from_dict(doc), "srv", now=cases.NOW)


def check_loaded(ns, bundle, backend: str) -> None:
    """Loaded, and (iptables) read back exactly as rendered: the agent's drift check."""
    load(ns, bundle, backend)
    if backend == NATIVE:
        listed = ns.run("nft", "list", "table", "inet", "rampart").stdout
        assert "limit name " in listed and "limit rate" not in listed
        return
    for family, text in ((4, bundle.iptables_v4), (6, bundle.iptables_v6)):
        assert saved_rules(ns, family, backend) == rules_by_chain(text)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rule_of_two_kernel_rules_lets_its_burst_through_once(backend):
    with host_pair("cpsl") as (client, server):
        second4 = client.addr4.rsplit(".", 1)[0] + ".3"
        second6 = client.addr6.rsplit(":", 1)[0] + ":3"
        client.run("ip", "addr", "add", f"{second4}/24", "dev", client.dev)  # type: ignore[attr-defined]
        client.run("ip", "-6", "addr", "add", f"{second6}/64", "dev", client.dev, "nodad")  # type: ignore[attr-defined]
        bundle = policy([client.addr4, second4, client.addr6, second6])
        assert "-j ACCEPT" in bundle.iptables_v4
        for text in (bundle.iptables_v4, bundle.iptables_v6):  # two kernel rules each
            assert (
                sum("-j ACCEPT" in line and "rpt:5d0c4f0e" in line for line in text.splitlines())
                == 2
            )
        server.listen(udp=[PORT])
        check_loaded(server, bundle, backend)
        for first, second, host in (
            (client.addr4, second4, server.addr4),
            (client.addr6, second6, server.addr6),
        ):
            tries = [(first, host, PORT)] * TRIES + [(second, host, PORT)] * TRIES
            got = json.loads(client.run(sys.executable, "-c", SEND, json.dumps(tries)).stdout)
            # one bucket of BURST for the rule (a bucket per kernel rule: BURST per source)
            assert got == [True] * BURST + [False] * (2 * TRIES - BURST), got


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_bounds_extremes_load_and_read_back(backend):
    extremes = [
        ("1/day", 1),
        ("10000/second", 10000),
        ("864000000/day", 5),
        ("36000000/hour", 10000),
        ("1/hour", 31),  # expiry printed: the 31 h refill
        ("29/hour", 900),  # the longest span the document takes near hashlimit's bound
        ("3/second", 7),
        ("120/hour", 5),  # printed 2/min, expiry 150 s
    ]
    rules = [
        {
            "chain": "input",
            "action": "accept",
            "protocol": "udp",
            "dports": [str(PORT + i)],
            "sources": ["198.18.200.0/24", "198.18.201.0/24", "2001:2:ff::/64", "2001:2:fe::/64"],
            "rate_limit": rate,
            "burst": burst,
            "log": True,
        }
        for i, (rate, burst) in enumerate(extremes)
    ]
    bundle = policy([], rules)
    with namespace("csle") as ns:
        check_loaded(ns, bundle, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_idle_bucket_is_not_forgotten_before_it_refilled(backend):
    """1/second, burst 4: refilling the burst takes 4 s, longer than hashlimit's default
    expiry (one unit: 1 s), after which its garbage collection (every second) would start
    the entry again full. The expiry the renderer sets keeps the bucket a plain token
    bucket: ~2 s after it was spent it holds ~2 tokens, not 4."""
    with host_pair("cpse") as (client, server):
        rule = {
            "chain": "input",
            "action": "accept",
            "protocol": "udp",
            "dports": [str(PORT)],
            "sources": [client.addr4],
            "rate_limit": "1/second",
            "burst": 4,
        }
        bundle = policy([], [rule])
        assert "--hashlimit-htable-expire 4000 " in bundle.iptables_v4
        server.listen(udp=[PORT])
        check_loaded(server, bundle, backend)
        tries = json.dumps([(client.addr4, server.addr4, PORT)] * 5)
        spent = json.loads(client.run(sys.executable, "-c", SEND, tries).stdout)
        assert spent[:4] == [True] * 4, spent
        time.sleep(2.0)  # + the last try's 0.3 s wait: past expiry and a collection
        again = json.loads(client.run(sys.executable, "-c", SEND, tries).stdout)
        assert 1 <= sum(again) <= 3, again  # refilled in part (4: forgotten, full again)
