"""Zones in a real kernel: packets arriving on two interfaces of one zone are both accepted
by the one rule that names the zone (one exact name, one '+' wildcard); a third interface
outside the zone falls to the drop default. IPv4 and IPv6."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from compiler import PolicyDocument, compile_device
from tests.support.netns import Netns, namespace, needs_netns, sh

from . import cases
from .kernel import DATAPLANES, NATIVE, load, rules_by_chain, saved_rules

pytestmark = needs_netns

PORT = 7611


@contextmanager
def star(names: list[str]) -> Iterator[tuple[Netns, list[Netns]]]:
    """A server namespace with one veth per name in `names` (its side named so), each to
    its own client namespace on 198.18.<i>.0/24 and 2001:2:0:<i>::/64."""
    with ExitStack() as stack:
        server = stack.enter_context(namespace("zsrv"))
        clients = []
        for i, name in enumerate(names, start=1):
            client = stack.enter_context(namespace(f"zc{i}"))
            peer = f"zp{i}_{os.getpid() % 10000}"
            sh(
                "ip", "link", "add", peer, "netns", client.name,
                "type", "veth", "peer", "name", name, "netns", server.name,
            )  # fmt: skip
            for ns, dev, host in ((client, peer, 1), (server, name, 2)):
                ns.run("ip", "addr", "add", f"198.18.{i}.{host}/24", "dev", dev)
                ns.run("ip", "-6", "addr", "add", f"2001:2:0:{i}::{host}/64", "dev", dev, "nodad")
                ns.run("ip", "link", "set", dev, "up")
            for _ in range(30):  # until neighbour discovery works
                ping = client.run("ping", "-6", "-c1", "-W1", f"2001:2:0:{i}::2", check=False)
                if ping.returncode == 0:
                    break
            clients.append(client)
        yield server, clients


def _accepted_per_client(dataplane: str, names: list[str], zones: list[dict]) -> list[bool]:
    """Load one rule (`accept tcp PORT in_zone inside`) with `zones` on a server whose
    interfaces are `names`; whether client i's TCP connection got through, the same over
    IPv4 and IPv6 (asserted)."""
    doc = PolicyDocument.from_dict(
        {
            "version": 1,
            "zones": zones,
            "rulesets": [
                {
                    "name": "zoned",
                    "rules": [
                        {
                            "chain": "input",
                            "action": "accept",
                            "protocol": "tcp",
                            "dports": [str(PORT)],
                            "in_zone": "inside",
                        }
                    ],
                }
            ],
            "devices": [{"name": "srv", "rulesets": ["zoned"]}],
        }
    )
    bundle = compile_device(doc, "srv", now=cases.NOW)
    accepted = []
    with star(names) as (server, clients):
        server.listen(tcp=[PORT])
        load(server, bundle, dataplane)
        for family, text in ((4, bundle.iptables_v4), (6, bundle.iptables_v6)):
            if dataplane != NATIVE:  # read back as iptables-save prints it
                assert saved_rules(server, family) == rules_by_chain(text)
        for i, client in enumerate(clients, start=1):
            got = client.probe(
                [
                    {"proto": "tcp", "host": f"198.18.{i}.2", "port": PORT},
                    {"proto": "tcp", "host": f"2001:2:0:{i}::2", "port": PORT},
                ],
                timeout=1.5,
            )
            assert got[0] == got[1], (names[i - 1], got)
            accepted.append(got[0])
    return accepted


def _names() -> list[str]:
    tag = os.getpid() % 10000
    return [f"zlan{tag}", f"zwifi{tag}", f"zdmz{tag}"]


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_two_interfaces_of_a_zone_accepted_a_third_dropped(dataplane):
    names = _names()
    zones = [
        {"name": "inside", "interfaces": [names[0], "zwifi+"]},
        {"name": "dmz", "interfaces": [names[2]]},
    ]
    assert _accepted_per_client(dataplane, names, zones) == [True, True, False]


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_zone_networks_only_from_them_and_only_on_the_zone(dataplane):
    """inside = two interfaces and the networks of clients 1 and 3: client 1 (its network,
    a zone interface) gets through; client 2 (a zone interface, outside the networks) and
    client 3 (in the networks, on an interface outside the zone) do not."""
    names = _names()
    zones = [
        {
            "name": "inside",
            "interfaces": [names[0], "zwifi+"],
            "networks": ["198.18.1.0/24", "198.18.3.0/24", "2001:2:0:1::/64", "2001:2:0:3::/64"],
        },
    ]
    assert _accepted_per_client(dataplane, names, zones) == [True, False, False]
