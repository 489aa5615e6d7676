"""Every bundle the compiler tests produce loads into a real kernel, and reads back as
written (so the agent can compare `iptables-save` output with the bundle line by line)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import CompileOptions, PolicyDocument, compile_device
from tests.support.netns import host_pair, namespace, needs_netns

from . import cases
from .kernel import load, rules_by_chain, saved_rules
from .test_compile import compile_random, random_policy

pytestmark = needs_netns


def _bundle(case: str, options: CompileOptions | None = None):
    build, device = cases.CASES[case]
    return compile_device(PolicyDocument.from_dict(build()), device, options=options, now=cases.NOW)


@pytest.mark.parametrize("case", sorted(cases.CASES))
@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_bundle_loads_and_reads_back(case, backend):
    bundle = _bundle(case)
    with namespace("cpld") as ns:
        load(ns, bundle, backend)
        for family, text in ((4, bundle.iptables_v4), (6, bundle.iptables_v6)):
            assert saved_rules(ns, family, backend) == rules_by_chain(text)
        sets = ns.run("ipset", "list", "-n").stdout.split()
        assert sorted(sets) == sorted(bundle.sets)


def test_inlined_everything_loads():
    """The same policies with ipsets switched off (threshold above every group) load too."""
    bundle = _bundle("sets_and_ports", CompileOptions(ipset_threshold=1000))
    # negated lists of several networks still need a set ("in none of them"); nothing else
    set_lines = [line for line in bundle.iptables_v4.splitlines() if "--match-set" in line]
    assert set_lines and all("! --match-set" in line for line in set_lines)
    with namespace("cpin") as ns:
        load(ns, bundle)


@pytest.mark.slow
def test_100k_group_loads_with_sized_set():
    bundle = compile_device(PolicyDocument.from_dict(cases.big_group()), "edge", now=cases.NOW)
    (meta,) = bundle.sets.values()
    assert meta["entries"] == 100_000 and meta["maxelem"] >= 100_000
    with namespace("cpbg") as ns:
        load(ns, bundle)
        name = next(iter(bundle.sets))
        header = ns.run("ipset", "list", "-t", name).stdout
        assert "Number of entries: 100000" in header


def test_ipv6_keeps_working_behind_a_stateful_drop_default():
    """Neighbour discovery must get through (step 3 of the evaluation order), even with the
    conntrack INVALID drop before it and empty neighbour caches."""
    with host_pair("cpnd") as (client, server):
        server.listen(tcp=[7443])
        doc = PolicyDocument.from_dict(
            {
                "version": 1,
                "rulesets": [
                    {
                        "name": "web",
                        "rules": [
                            {
                                "chain": "input",
                                "action": "accept",
                                "protocol": "tcp",
                                "dports": ["7443"],
                            }
                        ],
                    }
                ],
                "devices": [
                    {
                        "name": "srv",
                        "rulesets": ["web"],
                        "stateful": True,
                        "default_policy": {"input": "drop", "output": "drop"},
                    }
                ],
            }
        )
        load(server, compile_device(doc, "srv", now=cases.NOW))
        for ns in (client, server):
            ns.run("ip", "-6", "neigh", "flush", "all")
        assert client.probe(
            [
                {"proto": "tcp", "host": server.addr6, "port": 7443},
                {"proto": "tcp", "host": server.addr4, "port": 7443},
                {"proto": "tcp", "host": server.addr6, "port": 7444},
            ],
            timeout=3,
        ) == [True, True, False]


_example = iter(range(10**6))


@given(random_policy(), st.integers(1, 6))
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_policies_load(data, threshold):
    """The random policies of test_compile.py load too (nft; every 5th also legacy)."""
    bundle = compile_random(data, threshold)
    if bundle is None:
        return
    backends = ["nft", "legacy"] if next(_example) % 5 == 0 else ["nft"]
    for backend in backends:
        with namespace("cprn") as ns:
            load(ns, bundle, backend)
            assert saved_rules(ns, 4, backend) == rules_by_chain(bundle.iptables_v4)
