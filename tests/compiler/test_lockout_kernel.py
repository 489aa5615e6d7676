"""Real packets through the fixed steps that keep a device reachable and IPv6 working:
management traffic is exempt from every rule set's NAT (a DNAT of the agent port and of ssh
redirects everyone else), and the ICMPv6 exception admits neighbour discovery in INPUT and
OUTPUT, never a forwarded neighbour solicitation."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from compiler import PolicyDocument, compile_device
from rampart_agent.dataplane import NftDataplane
from rampart_agent.runner import Runner
from tests.support.netns import Netns, host_pair, namespace, needs_netns, sh

from . import cases
from .kernel import DATAPLANES, NATIVE, load

pytestmark = needs_netns

AGENT_PORT = 8745
SSH = 22


def _counters(
    ns: Netns, tool: str, table: str, chain: str, dataplane: str = "nft"
) -> dict[str, int]:
    """Packets per target (summed) of one chain, from `-L -v -x` (native nftables: as the
    agent's nft dataplane reads Rampart's table)."""
    out: dict[str, int] = {}
    if dataplane == NATIVE:
        dp = NftDataplane(Runner(prefix=["ip", "netns", "exec", ns.name]))
        live = dp.read("v6" if tool == "ip6tables" else "v4")[table].chains[chain]
        for rule in live:
            out[str(rule.target)] = out.get(str(rule.target), 0) + rule.packets
        return out
    text = ns.run(tool, "-t", table, "-L", chain, "-n", "-v", "-x").stdout
    for line in text.splitlines()[2:]:
        fields = line.split()
        if len(fields) > 2 and fields[0].isdigit():
            out[fields[2]] = out.get(fields[2], 0) + int(fields[0])
    return out


def _use_source(ns: Netns, prefix: str, source: str, family: int) -> None:
    """Make `source` the address new connections from `ns` to `prefix` leave from."""
    ip = ("ip",) if family == 4 else ("ip", "-6", "route", "replace", prefix, "metric", "256")
    if family == 4:
        ip += ("route", "replace", prefix)
    ns.run(*ip, "dev", ns.dev, "proto", "kernel", "src", source)  # type: ignore[attr-defined]


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_dnat_of_the_agent_port_and_ssh_spares_management_sources(dataplane):
    with host_pair("mgnt") as (client, server):
        n = client.addr4.split(".")[2]
        net6 = client.addr6.rsplit("::", 1)[0]
        other4, other6 = f"198.18.{n}.3", f"{net6}::3"
        client.run("ip", "addr", "add", f"{other4}/24", "dev", client.dev)  # type: ignore[attr-defined]
        client.run("ip", "-6", "addr", "add", f"{other6}/64", "dev", client.dev, "nodad")  # type: ignore[attr-defined]
        server.listen(tcp=[SSH, AGENT_PORT])
        # the DNAT target answers nothing (no such host, no forwarding): a redirected
        # connection fails, one that reaches the local listener succeeds
        nat = [
            {"type": "dnat", "protocol": "tcp", "dports": [str(SSH), str(AGENT_PORT)], "to": to}
            for to in (f"198.18.{n}.99", f"{net6}::99")
        ]
        doc = PolicyDocument.from_dict(
            {
                "version": 1,
                "rulesets": [
                    {
                        "name": "redirect",
                        "rules": [
                            {
                                "chain": "input",
                                "action": "accept",
                                "protocol": "tcp",
                                "dports": [str(SSH), str(AGENT_PORT)],
                            }
                        ],
                        "nat": nat,
                    }
                ],
                "devices": [
                    {
                        "name": "srv",
                        "rulesets": ["redirect"],
                        "agent_port": AGENT_PORT,
                        "management_sources": [client.addr4, client.addr6],
                    }
                ],
            }
        )
        load(server, compile_device(doc, "srv", now=cases.NOW), dataplane)
        targets = [(server.addr4, 4), (server.addr6, 6)]
        probes = [
            {"proto": "tcp", "host": h, "port": p} for h, _ in targets for p in (SSH, AGENT_PORT)
        ]
        # from the management sources: not redirected, the local listeners answer
        _use_source(client, f"198.18.{n}.0/24", client.addr4, 4)
        _use_source(client, f"{net6}::/64", client.addr6, 6)
        assert client.probe(probes, timeout=2) == [True] * 4
        for tool in ("iptables", "ip6tables"):
            counts = _counters(server, tool, "nat", "RPT-PREROUTING", dataplane)
            assert counts.get("DNAT", 0) == 0
        # from another source of the same host: redirected to the silent target
        _use_source(client, f"198.18.{n}.0/24", other4, 4)
        _use_source(client, f"{net6}::/64", other6, 6)
        assert client.probe(probes, timeout=1) == [False] * 4
        for tool in ("iptables", "ip6tables"):
            counts = _counters(server, tool, "nat", "RPT-PREROUTING", dataplane)
            assert counts["DNAT"] >= 2 and counts["RETURN"] >= 2, (tool, counts)


def _nd_doc(forward: str = "drop") -> PolicyDocument:
    """Drop defaults everywhere, stateless (nothing passes as ESTABLISHED): the rule sets
    allow echo requests in and echo replies out, so neighbour discovery gets through only
    by the ICMPv6 step."""
    return PolicyDocument.from_dict(
        {
            "version": 1,
            "services": [
                {"name": "ping6", "protocol": "icmpv6", "icmp_type": "echo-request"},
                {"name": "pong6", "protocol": "icmpv6", "icmp_type": "echo-reply"},
            ],
            "rulesets": [
                {
                    "name": "ping",
                    "rules": [
                        {"chain": "input", "action": "accept", "services": ["ping6"]},
                        {"chain": "output", "action": "accept", "services": ["pong6"]},
                    ],
                }
            ],
            "devices": [
                {
                    "name": "d",
                    "rulesets": ["ping"],
                    "stateful": False,
                    "default_policy": {"input": "drop", "forward": forward, "output": "drop"},
                }
            ],
        }
    )


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_neighbour_discovery_works_behind_drop_defaults(dataplane):
    """With empty neighbour caches both ways, a ping gets an answer only if the client's
    solicitation passes the server's INPUT and the server's advertisement its OUTPUT."""
    with host_pair("ndpg") as (client, server):
        load(server, compile_device(_nd_doc(), "d", now=cases.NOW), dataplane)
        for ns in (client, server):
            ns.run("ip", "-6", "neigh", "flush", "all")
        ping = client.run("ping", "-6", "-c1", "-W3", server.addr6, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        if dataplane == NATIVE:
            listed = server.run("nft", "list", "table", "inet", "rampart").stdout
            assert "icmpv6 type nd-neighbor-solicit ip6 hoplimit 255" in listed
            assert "nd-redirect" not in listed
            return
        saved = server.run("ip6tables-save").stdout
        assert "--icmpv6-type 135 -m hl --hl-eq 255" in saved
        assert "--icmpv6-type 137" not in saved


@contextmanager
def _routed() -> Iterator[tuple[Netns, Netns, Netns]]:
    """client — router — target over two veths (IPv6 only); the router forwards."""
    salt = os.getpid() % 256
    with namespace("ndc") as client, namespace("ndr") as router, namespace("ndt") as target:
        for k, (a, b) in enumerate(((client, router), (router, target))):
            left, right = f"rl{salt}_{k}", f"rr{salt}_{k}"
            sh(
                "ip",
                "link",
                "add",
                left,
                "netns",
                a.name,
                "type",
                "veth",
                "peer",
                "name",
                right,
                "netns",
                b.name,
            )
            net = f"2001:2:ff{salt:02x}:{k}"
            for ns, dev, host in ((a, left, 1), (b, right, 2)):
                ns.run("ip", "-6", "addr", "add", f"{net}::{host}/64", "dev", dev, "nodad")
                ns.run("ip", "link", "set", dev, "up")
        client.addr6, target.addr6 = f"2001:2:ff{salt:02x}:0::1", f"2001:2:ff{salt:02x}:1::2"
        router.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        client.run(
            "ip",
            "-6",
            "route",
            "add",
            f"2001:2:ff{salt:02x}:1::/64",
            "via",
            f"2001:2:ff{salt:02x}:0::2",
        )
        yield client, router, target


_SEND_NS = """
import socket, struct, sys
dst = sys.argv[1]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
msg = struct.pack("!BBHI", 135, 0, 0, 0) + socket.inet_pton(socket.AF_INET6, dst)
for _ in range(3):
    s.sendto(msg, (dst, 0))
"""


def _eventually(check, seconds: float = 2.0) -> bool:
    """True as soon as `check()` is (the first packets wait for neighbour discovery)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _solicitations_seen(target: Netns) -> int:
    text = target.run("ip6tables", "-L", "INPUT", "-n", "-v", "-x").stdout
    return sum(int(line.split()[0]) for line in text.splitlines()[2:] if "135" in line)


def test_a_forwarded_neighbour_solicitation_is_not_admitted():
    """The ICMPv6 exception lives in INPUT and OUTPUT only: a neighbour solicitation routed
    through the device meets the forward default (drop). With forward accept the very same
    packets arrive, so the probe can tell the two apart."""
    with _routed() as (client, router, target):
        target.run(
            "ip6tables",
            "-A",
            "INPUT",
            "-p",
            "ipv6-icmp",
            "--icmpv6-type",
            "135",
            "-s",
            client.addr6,
        )
        for forward, arrives in (("drop", False), ("accept", True)):
            target.run("ip6tables", "-Z", "INPUT")
            load(router, compile_device(_nd_doc(forward), "d", now=cases.NOW))
            client.run(sys.executable, "-c", _SEND_NS, target.addr6)
            assert _eventually(lambda: _solicitations_seen(target) > 0) == arrives, forward
            forwarded = router.run("ip6tables-save").stdout
            assert not re.search(r"-A RPT-FORWARD .*icmpv6", forwarded)
            router.run("ip6tables-restore", input="*filter\nCOMMIT\n")
