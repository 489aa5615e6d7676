"""For random policies with NAT, the tracer's verdict and translation are what real packets get.

Three namespaces: a client, a router (the device: the compiled bundle is loaded there) and
a backend behind it. Every port the client probes is served by both the router and the
backend, so a connect succeeds exactly when the firewall lets it through, and the router's
conntrack table says where it went: its reply tuple is the translated destination (DNAT)
and source (SNAT), which must be the tracer's. The device is stateful, so the rest of a
connection follows its first packet.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import Packet, PolicyDocument, Tracer, compile_device
from compiler.tracer_nat import endpoint
from tests.support.netns import Netns, namespace, needs_netns, sh

from . import cases
from .kernel import load, reset

pytestmark = [*needs_netns, pytest.mark.slow]

PORTS = [7001, 7003, 7005, 8001, 8002, 8003]
AGENT_PORT = 7005
_sports = itertools.count(21000)
_subnet = itertools.count(1)


@dataclass
class Lab:
    """client —(a)— router —(b)— backend; the router is the device traced."""

    client: Netns
    router: Netns
    backend: Netns
    n: int
    router_a: str  # the router's interface towards the client
    router_b: str

    def addr(self, side: str, host: int, family: int = 4) -> str:
        """`side` a (client link) or b (backend link); host 1 = client/backend, 2 = router."""
        net = 18 if side == "a" else 19
        if family == 4:
            return f"198.{net}.{self.n}.{host}"
        return f"2001:2:{net - 18}:{self.n:x}::{host}"

    @property
    def router_addresses(self) -> list[str]:
        return [self.addr(s, 2, f) for s in "ab" for f in (4, 6)]


def _link(
    left: Netns, right: Netns, names: tuple[str, str], nets: tuple[str, str], hosts=(1, 2)
) -> None:
    sh(
        *f"ip link add {names[0]} netns {left.name} type veth peer name {names[1]}".split(),
        "netns",
        right.name,
    )
    for ns, dev, host in ((left, names[0], hosts[0]), (right, names[1], hosts[1])):
        ns.run("ip", "addr", "add", f"{nets[0]}{host}/24", "dev", dev)
        ns.run("ip", "-6", "addr", "add", f"{nets[1]}{host:x}/64", "dev", dev, "nodad")
        ns.run("ip", "link", "set", dev, "up")


@contextmanager
def lab() -> Iterator[Lab]:
    n = (os.getpid() * 11 + next(_subnet)) % 250 + 1
    tag = f"{os.getpid() % 1000}"
    with namespace("ntc") as client, namespace("ntr") as router, namespace("ntb") as backend:
        lab = Lab(client, router, backend, n, f"na{n}_{tag}", f"nb{n}_{tag}")
        _link(client, router, (f"ca{n}_{tag}", lab.router_a), (f"198.18.{n}.", f"2001:2:0:{n:x}::"))
        _link(
            backend,
            router,
            (f"bb{n}_{tag}", lab.router_b),
            (f"198.19.{n}.", f"2001:2:1:{n:x}::"),
        )
        router.run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        for ns, side in ((client, "a"), (backend, "b")):
            ns.run("ip", "route", "add", "default", "via", lab.addr(side, 2))
            ns.run("ip", "-6", "route", "add", "default", "via", lab.addr(side, 2, 6))
        for ns in (client, router, backend):
            ns.listen(tcp=PORTS)
        for family in (4, 6):  # wait until the links answer both ways
            for _ in range(30):
                ping = client.run(
                    "ping", f"-{family}", "-c1", "-W1", lab.addr("b", 1, family), check=False
                )
                if ping.returncode == 0:
                    break
        yield lab


@pytest.fixture(scope="module")
def topology():
    with lab() as made:
        yield made


@st.composite
def policy(draw, lab: Lab, family: int) -> dict:
    """Random DNAT rules (to the backend, to the router's own addresses), maybe an SNAT,
    random input/forward rules and defaults, in one family."""
    client, backend = lab.addr("a", 1, family), lab.addr("b", 1, family)
    router_a, router_b = lab.addr("a", 2, family), lab.addr("b", 2, family)
    targets = [
        endpoint(ip_address(backend), 7001),
        endpoint(ip_address(backend), 8002),
        backend,  # the port is kept
        endpoint(ip_address(router_a), 7003),  # the router's own address: stays local
        endpoint(ip_address(router_b), 8003),  # its other address: local too
    ]
    nat = []
    for _ in range(draw(st.integers(1, 3))):
        rule = {
            "type": "dnat",
            "protocol": "tcp",
            "dports": draw(st.lists(st.sampled_from(["7005", "8001", "8002", "8003"]), min_size=1)),
            "to": draw(st.sampled_from(targets)),
        }
        if draw(st.booleans()):
            rule["destinations"] = [draw(st.sampled_from([router_a, backend]))]
        if draw(st.integers(0, 2)) == 0:
            rule["in_interface"] = draw(st.sampled_from([lab.router_a, "nope0"]))
        nat.append(rule)
    if draw(st.booleans()):
        nat.append(
            {
                "type": "snat",
                "out_interface": lab.router_b,
                "sources": [client],
                "to": router_b,
            }
        )
    rules = []
    for _ in range(draw(st.integers(0, 5))):
        rule = {
            "chain": draw(st.sampled_from(["input", "forward"])),
            "action": draw(st.sampled_from(["accept", "drop", "reject"])),
            "protocol": "tcp",
        }
        if draw(st.booleans()):
            rule["dports"] = draw(st.lists(st.sampled_from([str(p) for p in PORTS]), min_size=1))
        if draw(st.booleans()):
            rule["destinations"] = [draw(st.sampled_from([router_a, backend]))]
        rules.append(rule)
    return {
        "version": 1,
        "rulesets": [{"name": "random", "rules": rules, "nat": nat}],
        "devices": [
            {
                "name": "router",
                "rulesets": ["random"],
                "agent_port": AGENT_PORT,
                "management_sources": draw(st.sampled_from([[], [client]])),
                "default_policy": {
                    "input": draw(st.sampled_from(["drop", "accept"])),
                    "forward": draw(st.sampled_from(["drop", "accept"])),
                },
            }
        ],
    }


def conntrack(ns: Netns) -> dict[tuple[str, int], tuple[str, str, int, int]]:
    """The router's TCP connections by (original source, source port): the reply tuple
    (source, destination, sport, dport) — i.e. translated destination and source."""
    out = {}
    for line in ns.run("cat", "/proc/net/nf_conntrack").stdout.splitlines():
        fields = line.split()
        if "tcp" not in fields:
            continue
        pairs = [f.split("=", 1) for f in fields if "=" in f]
        src, sport = [v for k, v in pairs if k == "src"], [v for k, v in pairs if k == "sport"]
        dst, dport = [v for k, v in pairs if k == "dst"], [v for k, v in pairs if k == "dport"]
        if len(src) >= 2 and len(sport) >= 2:  # IPv6 is printed unabridged
            src, dst = [str(ip_address(a)) for a in src], [str(ip_address(a)) for a in dst]
            out[(src[0], int(sport[0]))] = (src[1], dst[1], int(sport[1]), int(dport[1]))
    return out


def split(endpoint: str) -> tuple[str, int]:
    """`198.18.1.2:80` / `[2001:2::1]:80` → (address, port)."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def expected_reply(result, packet: Packet) -> tuple[str, str, int]:
    """(reply source, reply destination, reply source port) the tracer's answer implies:
    the translated destination and port, and the translated source."""
    dst, dport = str(packet.destination), packet.dport or 0
    src = str(packet.source)
    for step in result.nat:
        if step.target == "DNAT":
            dst, dport = split(step.after)
        elif step.target == "SNAT":
            src = split(step.after)[0]
    return dst, src, dport


def probes(lab: Lab, family: int) -> list[tuple[str, int]]:
    dests = [lab.addr("a", 2, family), lab.addr("b", 2, family), lab.addr("b", 1, family)]
    return [(d, p) for d in dests for p in PORTS]


@pytest.mark.parametrize("dataplane", ["nft", "nft-native"])
@given(st.data())
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_tracer_agrees_with_the_kernel_through_nat(topology, dataplane, data):
    lab = topology
    family = data.draw(st.sampled_from([4, 6]))
    doc = PolicyDocument.from_dict(data.draw(policy(lab, family)))
    bundle = compile_device(doc, "router", now=cases.NOW)
    reset(lab.router, dataplane)
    load(lab.router, bundle, dataplane)
    tracer = Tracer(bundle.program, now=datetime.now(UTC), local_addresses=lab.router_addresses)
    client = lab.addr("a", 1, family)
    sent, expected = [], []
    for host, port in probes(lab, family):
        sport = next(_sports)
        local = host in lab.router_addresses
        packet = Packet.from_params(
            {
                "chain": "input" if local else "forward",
                "protocol": "tcp",
                "source": client,
                "destination": host,
                "sport": str(sport),
                "dport": str(port),
                "in_interface": lab.router_a,
                # where the packet would leave if it is forwarded (after a DNAT too): an
                # input trace never matches on it
                "out_interface": lab.router_b,
            }
        )
        sent.append({"proto": "tcp", "host": host, "port": port, "sport": sport})
        expected.append((packet, tracer.trace(packet)))
    got = lab.client.probe(sent, timeout=0.5)
    table = conntrack(lab.router)
    wrong = []
    for probe, (packet, result), ok in zip(sent, expected, got, strict=True):
        if (result.verdict == "accept") != ok:
            wrong.append((probe, result.verdict, result.tag, [s.after for s in result.nat]))
            continue
        if ok:
            reply = table.get((client, probe["sport"]))
            want = expected_reply(result, packet)
            if reply is None or (reply[0], reply[1], reply[2]) != want:
                wrong.append((probe, "translated", want, reply))
    assert not wrong, f"{wrong}\n{bundle.iptables_v4 if family == 4 else bundle.iptables_v6}"


@pytest.mark.parametrize("dataplane", ["nft", "nft-native"])
def test_dnat_cases_by_hand(topology, dataplane):
    """The cases the property test draws, spelled out: a DNAT to the backend is forwarded
    (and governed by FORWARD), a DNAT to the router's own other address stays local, the
    management exemption keeps the agent port local, SNAT shows in conntrack."""
    lab = topology
    client, backend, router = lab.addr("a", 1), lab.addr("b", 1), lab.addr("a", 2)
    doc = PolicyDocument.from_dict(
        {
            "version": 1,
            "rulesets": [
                {
                    "name": "pub",
                    "rules": [
                        {
                            "chain": "forward",
                            "action": "accept",
                            "protocol": "tcp",
                            "destinations": [backend],
                            "dports": ["7001"],
                        },
                        {
                            "chain": "input",
                            "action": "accept",
                            "protocol": "tcp",
                            "dports": ["8003"],
                        },
                    ],
                    "nat": [
                        {
                            "type": "dnat",
                            "protocol": "tcp",
                            "dports": ["8001", "7005"],
                            "to": f"{backend}:7001",
                        },
                        {
                            "type": "dnat",
                            "protocol": "tcp",
                            "dports": ["8002"],
                            "to": f"{lab.addr('b', 2)}:8003",
                        },
                        {"type": "snat", "out_interface": lab.router_b, "to": lab.addr("b", 2)},
                    ],
                }
            ],
            "devices": [
                {
                    "name": "router",
                    "rulesets": ["pub"],
                    "agent_port": AGENT_PORT,
                    "management_sources": [client],
                }
            ],
        }
    )
    bundle = compile_device(doc, "router", now=cases.NOW)
    reset(lab.router, dataplane)
    load(lab.router, bundle, dataplane)
    tracer = Tracer(bundle.program, now=datetime.now(UTC), local_addresses=lab.router_addresses)
    cases_ = {  # dport: (filter chain, verdict, reply source as conntrack shows it)
        8001: ("forward", "accept", f"{backend}:7001"),
        8002: ("input", "accept", f"{lab.addr('b', 2)}:8003"),
        AGENT_PORT: ("input", "accept", f"{router}:{AGENT_PORT}"),  # exempt: not DNATed
        8003: ("input", "accept", f"{router}:8003"),
        7003: ("input", "drop", None),
    }
    sports = {port: next(_sports) for port in cases_}
    got = lab.client.probe(
        [{"proto": "tcp", "host": router, "port": p, "sport": sports[p]} for p in cases_],
        timeout=0.5,
    )
    table = conntrack(lab.router)
    for (port, (chain, verdict, reply)), ok in zip(cases_.items(), got, strict=True):
        result = tracer.trace(
            Packet.from_params(
                {
                    "protocol": "tcp",
                    "source": client,
                    "destination": router,
                    "sport": str(sports[port]),
                    "dport": str(port),
                    "in_interface": lab.router_a,
                }
            )
        )
        assert (result.chain, result.verdict) == (chain, verdict), port
        assert ok == (verdict == "accept"), port
        if reply is not None:
            seen = table[(client, sports[port])]
            assert f"{seen[0]}:{seen[2]}" == reply, port
    snat = tracer.trace(
        Packet.from_params(
            {
                "protocol": "tcp",
                "source": client,
                "destination": router,
                "sport": "1234",
                "dport": "8001",
                "in_interface": lab.router_a,
                "out_interface": lab.router_b,
            }
        )
    )
    assert [(s.hook, s.target, s.after) for s in snat.nat] == [
        ("PREROUTING", "DNAT", f"{backend}:7001"),
        ("POSTROUTING", "SNAT", f"{lab.addr('b', 2)}:1234"),
    ]
    seen = table[(client, sports[8001])]
    assert seen[1] == lab.addr("b", 2)  # the backend answered the router's address (SNAT)
