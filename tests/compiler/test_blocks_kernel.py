"""Set-compiled policies in a real kernel (ipset + iptables-legacy and iptables-nft): real
TCP/UDP probes get the tracer's verdicts, and each set element counts its own rule's packets.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import re
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import CompileOptions, Packet, PolicyDocument, Tracer, compile_device
from compiler.ir import SHAPES
from tests.support.netns import connect, host_pair, needs_netns

from . import cases
from .kernel import load, reset, rules_by_chain, saved_rules
from .test_blocks import _disjoint_rules, _doc_of
from .test_tracer_kernel import EPHEMERAL, pin_neighbours

pytestmark = [*needs_netns, pytest.mark.slow]

PORTS = [7001, 7002, 7003, 7010]
THIS_KERNEL = frozenset({"hash:net", "hash:net,port", "hash:ip,port,net", "hash:ip,port,ip"})
_sport_base = itertools.count(30000, 10)


# every set shape: what a native nftables device is compiled with (concatenated sets)
ALL_SHAPES = frozenset(kind for kind, _ in SHAPES.values())
IPSET_ONLY = "ipset counters and iptables-save read-back; nft-native: test_nft_native_netns.py"


@pytest.fixture(scope="module", params=["legacy", "nft", "nft-native"])
def pair(request):
    with host_pair("cpbk") as (client, server):
        pin_neighbours(client, server)
        server.listen(tcp=PORTS, udp=PORTS)
        yield client, server, request.param
        reset(server, request.param)


@st.composite
def policy(draw, client, server) -> dict:
    """Rules that sets can hold (one address side or two, tcp/udp ports; accept, drop,
    reject, a TCP reset) with some that they cannot (interfaces, states, negation, LOG)
    between them."""
    n = client.addr4.split(".")[2]
    n6 = client.addr6.split("::")[0]
    srcs = {
        4: [client.addr4, f"198.18.{n}.0/24", f"198.18.{n}.0/30", "198.19.0.0/16"],
        6: [client.addr6, f"{n6}::/64", "2001:2:ffff::/48"],
    }
    dsts = {4: [server.addr4, f"198.18.{n}.0/30", "198.19.1.1"], 6: [server.addr6]}
    ports = ["7001", "7002-7003", "7010", "9", "7000-7005", "7003"]
    rules = []
    for _ in range(draw(st.integers(1, 14))):
        family = draw(st.sampled_from([4, 6]))
        action = draw(st.sampled_from(["accept", "accept", "drop", "reject"]))
        rule: dict = {"chain": "input", "action": action}
        sides = draw(st.sampled_from(["src", "dst", "both"]))
        if sides != "dst":
            rule["sources"] = [draw(st.sampled_from(srcs[family]))]
        if sides != "src":
            rule["destinations"] = [draw(st.sampled_from(dsts[family]))]
        rule["protocol"] = draw(st.sampled_from(["tcp", "udp"]))
        rule["dports"] = draw(st.lists(st.sampled_from(ports), min_size=1, max_size=2, unique=True))
        odd = draw(st.integers(0, 7))
        if odd == 0:
            rule["in_interface"] = server.dev
        elif odd == 1:
            rule["states"] = ["new"]
        elif odd == 2 and "sources" in rule:
            rule["sources_negate"] = True
        elif odd == 3:
            rule["log"] = True
        if action == "reject" and rule["protocol"] == "tcp" and draw(st.booleans()):
            rule["reject_with"] = "tcp-reset"  # its set rule must say -p tcp
        rules.append(rule)
    return {
        "version": 1,
        "rulesets": [{"name": "random", "rules": rules}],
        "devices": [
            {
                "name": "server",
                "rulesets": ["random"],
                "stateful": True,
                "default_policy": {"input": draw(st.sampled_from(["drop", "accept"]))},
            }
        ],
    }


@given(st.data())
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_set_compiled_policy_agrees_with_the_tracer(pair, data):
    client, server, backend = pair
    doc = PolicyDocument.from_dict(data.draw(policy(client, server)))
    options = CompileOptions(
        set_compile=True,
        set_types=data.draw(
            st.sampled_from(
                [THIS_KERNEL, frozenset({"hash:net,port"})]
                + ([ALL_SHAPES] if backend == "nft-native" else [])
            )
        ),
        set_min_rules=data.draw(st.sampled_from([1, 2])),
        set_guard_min=data.draw(st.sampled_from([None, 1])),
        set_elements_max=data.draw(st.sampled_from([None, 3])),  # ipset sets cut in parts
    )
    if options.set_types == ALL_SHAPES:  # nft interval sets hold whole port ranges
        options = dataclasses.replace(options, set_range_max=65536)
    bundle = compile_device(doc, "server", options=options, now=cases.NOW)
    linear = Tracer(compile_device(doc, "server", now=cases.NOW).program)
    reset(server, backend)
    load(server, bundle, backend)
    tracer = Tracer(bundle.program, now=datetime.now(UTC))
    base = next(_sport_base)
    probes, expected = [], []
    for proto, v6, port in itertools.product(("tcp", "udp"), (False, True), PORTS):
        src, dst = (client.addr6, server.addr6) if v6 else (client.addr4, server.addr4)
        packet = Packet.from_params(
            {
                "protocol": proto,
                "source": src,
                "destination": dst,
                "sport": str(EPHEMERAL),
                "dport": str(port),
                "in_interface": server.dev,
            }
        )
        verdict = tracer.trace(packet)
        same = linear.trace(packet)
        assert (verdict.verdict, verdict.rule_id) == (same.verdict, same.rule_id)
        if proto == "tcp" and verdict.verdict == "accept":
            assert tracer.trace(dataclasses.replace(packet, state="established")).verdict == (
                "accept"
            )
        probes.append({"proto": proto, "host": dst, "port": port, "sport": base + len(probes)})
        expected.append(verdict)
    got = client.probe(probes, timeout=0.5)
    wrong = [
        (p, e.verdict, e.tag)
        for p, e, g in zip(probes, expected, got, strict=True)
        if (e.verdict == "accept") != g
    ]
    assert not wrong, f"{wrong}\n{bundle.iptables_v4}\n{bundle.ipsets}"


def _element_counts(ns, uuids: list[str]) -> dict[str, int]:
    """Packets per rule uuid, summed over the elements of every set (ipset save)."""
    counts = dict.fromkeys(uuids, 0)
    for line in ns.run("ipset", "save").stdout.splitlines():
        found = re.search(r' packets (\d+) bytes \d+ comment "rpt:([^:]+):', line)
        if found and found.group(2) in counts:
            counts[found.group(2)] += int(found.group(1))
    return counts


def test_each_element_counts_its_own_rule(pair):
    """Four rules in one set (stateful: a connection's first packet is counted once)."""
    client, server, backend = pair
    if backend == "nft-native":
        pytest.skip(IPSET_ONLY)
    uuids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(4)]
    rules = [
        {"id": uuids[i], "chain": "input", "action": "accept", "sources": [client.addr4]}
        | {"protocol": proto, "dports": [str(port)]}
        for i, (proto, port) in enumerate(
            [("tcp", 7001), ("tcp", 7002), ("udp", 7003), ("tcp", 7010)]
        )
    ]
    doc = {
        "version": 1,
        "rulesets": [{"name": "counted", "rules": rules}],
        "devices": [
            {
                "name": "server",
                "rulesets": ["counted"],
                "stateful": True,
                "default_policy": {"input": "drop"},
            }
        ],
    }
    bundle = compile_device(
        PolicyDocument.from_dict(doc),
        "server",
        options=CompileOptions(set_compile=True, set_types=THIS_KERNEL),
        now=cases.NOW,
    )
    assert len(bundle.program.lookups) == 1
    reset(server, backend)
    load(server, bundle, backend)
    sent = {uuids[0]: 3, uuids[1]: 2, uuids[2]: 1, uuids[3]: 0}
    probes = [{"proto": "tcp", "host": server.addr4, "port": 7001}] * 3 + [
        {"proto": "tcp", "host": server.addr4, "port": 7002}
    ] * 2
    assert all(client.probe(probes, timeout=1.0))
    assert _element_counts(server, uuids) == {**sent, uuids[2]: 0}
    # a UDP probe counts its request once (its echo is ESTABLISHED on the way back)
    assert client.probe([{"proto": "udp", "host": server.addr4, "port": 7003}], timeout=1.0)
    assert _element_counts(server, uuids) == sent


@pytest.mark.parametrize("case", ["disjoint", "example"])
def test_set_compiled_bundle_reads_back_as_written(pair, case):
    """`iptables-save` prints the lookup rules as the bundle writes them (what drift
    compares), and every set is there with its elements."""
    _, server, backend = pair
    if backend == "nft-native":
        pytest.skip(IPSET_ONLY)
    if case == "disjoint":
        doc, device = _doc_of(_disjoint_rules(40)), "bare"
    else:
        build, device = cases.CASES[case]
        doc = build()
    options = CompileOptions(set_compile=True, set_types=THIS_KERNEL, set_min_rules=1)
    bundle = compile_device(PolicyDocument.from_dict(doc), device, options=options, now=cases.NOW)
    assert bundle.program is not None and bundle.program.lookups
    reset(server, backend)
    load(server, bundle, backend)
    for family, text in ((4, bundle.iptables_v4), (6, bundle.iptables_v6)):
        assert saved_rules(server, family, backend) == rules_by_chain(text)
    assert sorted(server.run("ipset", "list", "-n").stdout.split()) == sorted(bundle.sets)
    for name, meta in bundle.sets.items():
        header = server.run("ipset", "list", "-t", name).stdout
        assert f"Number of entries: {meta['entries']}" in header


def test_wide_port_range_keeps_its_ports_in_the_set_rule(pair):
    """Rules with a port range wider than ipset elements can say (99 ports) become one rule
    `-p tcp -m tcp --dport 7002:7100 -m set --match-set <their sources> src` per verdict:
    real TCP/UDP gets the tracer's verdicts (7001 is outside the range), iptables-save
    reads the rule back as written, and each element counts its own rule's packets."""
    client, server, backend = pair
    if backend == "nft-native":
        pytest.skip(IPSET_ONLY)
    uuids = [f"00000000-0000-4000-8000-00000000001{i}" for i in range(4)]
    wide = ["7002-7100"]
    shapes = [
        ("accept", client.addr4, "tcp"),
        ("accept", "198.19.0.0/16", "tcp"),
        ("drop", client.addr4, "udp"),
        ("drop", "198.19.0.0/16", "udp"),
    ]
    rules = [
        {"id": uuid, "chain": "input", "action": action, "sources": [src]}
        | {"protocol": proto, "dports": wide}
        for uuid, (action, src, proto) in zip(uuids, shapes, strict=True)
    ]
    doc = {
        "version": 1,
        "rulesets": [{"name": "wide", "rules": rules}],
        "devices": [
            {
                "name": "server",
                "rulesets": ["wide"],
                "stateful": True,
                "default_policy": {"input": "accept"},
            }
        ],
    }
    options = CompileOptions(set_compile=True, set_types=THIS_KERNEL, set_min_rules=2)
    bundle = compile_device(PolicyDocument.from_dict(doc), "server", options=options, now=cases.NOW)
    assert bundle.program is not None and len(bundle.program.lookups) == 2
    assert "-p tcp -m tcp --dport 7002:7100 -m set --match-set rpt-4s-" in bundle.iptables_v4
    assert "-p udp -m udp --dport 7002:7100 -m set --match-set rpt-4s-" in bundle.iptables_v4
    reset(server, backend)
    load(server, bundle, backend)
    assert saved_rules(server, 4, backend) == rules_by_chain(bundle.iptables_v4)
    tracer = Tracer(bundle.program, now=datetime.now(UTC))
    base = next(_sport_base)
    probes = [
        {"proto": proto, "host": server.addr4, "port": port, "sport": base + i}
        for i, (proto, port) in enumerate(
            [("tcp", 7002)] * 3
            + [("tcp", 7010)] * 2
            + [("tcp", 7001), ("udp", 7003), ("udp", 7001)]
        )
    ]
    expected = [
        tracer.trace(
            Packet.from_params(
                {
                    "protocol": p["proto"],
                    "source": client.addr4,
                    "destination": server.addr4,
                    "sport": str(EPHEMERAL),
                    "dport": str(p["port"]),
                    "in_interface": server.dev,
                }
            )
        )
        for p in probes
    ]
    assert [(e.verdict, e.rule_id) for e in expected] == [("accept", uuids[0])] * 5 + [
        ("accept", None),
        ("drop", uuids[2]),
        ("accept", None),
    ]
    assert client.probe(probes, timeout=0.5) == [e.verdict == "accept" for e in expected]
    # the accepted connections' first packets, and the dropped datagram
    assert _element_counts(server, uuids) == dict(zip(uuids, [5, 0, 1, 0], strict=True))


def test_a_tcp_reset_set_rule_loads_and_resets(pair):
    """REJECT with tcp-reset rules in one set: the set rule says `-p tcp` (the kernel's
    REJECT refuses a TCP reset without it, and so the whole restore), and a connection
    is refused with a reset in both families while the tracer says which rule did it."""
    client, server, backend = pair
    uuids = [f"00000000-0000-4000-8000-00000000002{i}" for i in range(5)]
    rules = [
        {"id": uuids[i], "chain": "input", "action": "reject", "reject_with": "tcp-reset"}
        | {"sources": [src], "protocol": "tcp", "dports": [port]}
        for i, (src, port) in enumerate(
            [(client.addr4, "7001"), (client.addr4, "7002"), (client.addr6, "7001")]
            + [(client.addr6, "7002")]
        )
    ]
    rules.append({"id": uuids[4], "chain": "input", "action": "accept", "protocol": "tcp"})
    doc = {
        "version": 1,
        "rulesets": [{"name": "reset", "rules": rules}],
        "devices": [{"name": "server", "rulesets": ["reset"], "default_policy": {}}],
    }
    options = CompileOptions(set_compile=True, set_types=THIS_KERNEL, set_min_rules=1)
    if backend == "nft-native":
        options = dataclasses.replace(options, set_types=ALL_SHAPES, set_range_max=65536)
    bundle = compile_device(PolicyDocument.from_dict(doc), "server", options=options, now=cases.NOW)
    assert bundle.program is not None and len(bundle.program.lookups) == 2
    assert "-p tcp -m set --match-set" in bundle.iptables_v4 + bundle.iptables_v6
    reset(server, backend)
    load(server, bundle, backend)
    tracer = Tracer(bundle.program, now=datetime.now(UTC))
    targets = [(host, port) for host in (server.addr4, server.addr6) for port in (7001, 7002, 7010)]
    decided = [
        tracer.trace(
            Packet.from_params(
                {"protocol": "tcp", "source": client.addr6 if ":" in host else client.addr4}
                | {"destination": host, "dport": str(port), "in_interface": server.dev}
            )
        )
        for host, port in targets
    ]
    assert [(d.verdict, d.rule_id) for d in decided] == [
        ("reject", uuids[0]),
        ("reject", uuids[1]),
        ("accept", uuids[4]),
        ("reject", uuids[2]),
        ("reject", uuids[3]),
        ("accept", uuids[4]),
    ]
    got = connect(client, targets)
    assert got == [errno.ECONNREFUSED] * 2 + [0] + [errno.ECONNREFUSED] * 2 + [0]
