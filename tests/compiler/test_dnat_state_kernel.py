"""`states: [dnat]` in a real kernel: a port-forwarded connection to the backend is
accepted, a connection made straight to the same backend address and port is not, and
the tracer says the same (lab of test_tracer_nat_kernel: client — router — backend)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from ipaddress import ip_address

import pytest

from compiler import Packet, PolicyDocument, Tracer, compile_device
from compiler.tracer_nat import endpoint
from tests.support.netns import needs_netns

from . import cases
from .kernel import DATAPLANES, load, reset
from .test_tracer_nat_kernel import AGENT_PORT, lab

pytestmark = [*needs_netns, pytest.mark.slow]
_sports = itertools.count(23000)


@pytest.fixture(scope="module")
def topology():
    with lab() as made:
        yield made


@pytest.mark.parametrize("dataplane", [*DATAPLANES, "legacy"])
@pytest.mark.parametrize("family", [4, 6])
def test_forwarded_accepted_straight_refused(topology, dataplane, family):
    router_a, backend = topology.addr("a", 2, family), topology.addr("b", 1, family)
    doc = {
        "version": 1,
        "rulesets": [
            {
                "name": "fwd",
                "nat": [
                    {
                        "type": "dnat",
                        "protocol": "tcp",
                        "dports": ["8001"],
                        "to": endpoint(ip_address(backend), 7001),
                    }
                ],
                "rules": [
                    {
                        "chain": "forward",
                        "action": "accept",
                        "protocol": "tcp",
                        "dports": ["7001"],
                        "destinations": [backend],
                        "states": ["dnat"],
                    }
                ],
            }
        ],
        "devices": [
            {
                "name": "router",
                "rulesets": ["fwd"],
                "agent_port": AGENT_PORT,
                "default_policy": {"input": "drop", "forward": "drop"},
            }
        ],
    }
    bundle = compile_device(PolicyDocument.from_dict(doc), "router", now=cases.NOW)
    for backend_tools in ("nft", "legacy"):  # legacy's tables would stay under nft's
        reset(topology.router, backend_tools)
    load(topology.router, bundle, dataplane)
    probes = [(router_a, 8001), (backend, 7001), (router_a, 7001)]
    got = topology.client.probe(
        [{"proto": "tcp", "host": h, "port": p, "sport": next(_sports)} for h, p in probes],
        timeout=0.5,
    )
    assert got == [True, False, False]  # forwarded; straight to the backend; not forwarded
    tracer = Tracer(
        bundle.program, now=datetime.now(UTC), local_addresses=topology.router_addresses
    )
    traced = [
        tracer.trace(
            Packet.from_params(
                {
                    "chain": "input" if host == router_a else "forward",
                    "protocol": "tcp",
                    "source": topology.addr("a", 1, family),
                    "destination": host,
                    "dport": str(port),
                    "in_interface": topology.router_a,
                    "out_interface": topology.router_b,
                }
            )
        ).verdict
        == "accept"
        for host, port in probes
    ]
    assert traced == got
