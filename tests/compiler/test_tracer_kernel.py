"""For random policies, the tracer's verdict is what real packets get.

The server namespace of a veth pair gets a random compiled policy; the client sends TCP
connects and UDP probes (IPv4 and IPv6, ephemeral and fixed source ports) and each outcome
must equal the tracer's answer for the same packet (accept ⇔ the probe got through).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import CompileOptions, Packet, PolicyDocument, Tracer, compile_device
from compiler.lower import segments
from tests.support.netns import host_pair, needs_netns

from . import cases
from .kernel import DATAPLANES, load, reset

pytestmark = [*needs_netns, pytest.mark.slow]

PORTS = [7001, 7002, 7003, 7010]
EPHEMERAL = 40000  # the tracer's stand-in for a kernel-chosen port (rules never name it)
_sport_base = itertools.count(20000, 10)
EXPIRIES = [cases.NOW + timedelta(hours=1), datetime.now(UTC) + timedelta(days=1)]


def pin_neighbours(client, server) -> None:
    """Permanent neighbour entries both ways: a probe's verdict must not depend on how fast
    neighbour discovery is on a loaded machine (it is tested on its own in test_kernel.py)."""
    macs = {
        ns.name: json.loads(ns.run("ip", "-j", "link", "show", "dev", ns.dev).stdout)[0]["address"]
        for ns in (client, server)
    }
    for ns, peer in ((client, server), (server, client)):
        for addr in (peer.addr4, peer.addr6):
            ns.run(
                "ip",
                "neigh",
                "replace",
                addr,
                "lladdr",
                macs[peer.name],
                "dev",
                ns.dev,
                "nud",
                "permanent",
            )


@pytest.fixture(scope="module")
def pair():
    with host_pair("cptr") as (client, server):
        pin_neighbours(client, server)
        server.listen(tcp=PORTS, udp=PORTS)
        yield client, server


@st.composite
def policy(draw, client, server) -> dict:
    n = client.addr4.split(".")[2]
    n6 = client.addr6.split("::")[0]
    addrs = [
        client.addr4,
        f"198.18.{n}.0/24",
        "198.19.0.0/16",
        f"198.18.{n}.1-198.18.{n}.9",
        client.addr6,
        f"{n6}::/64",
        "2001:2:ffff::/48",
    ]
    dsts = [server.addr4, server.addr6, f"198.18.{n}.0/30", "198.19.1.1"]
    ports = st.lists(
        st.sampled_from(["7001", "7002-7003", "7010", "9", "7000-7005"]), min_size=1, max_size=3
    )
    rules = []
    for _ in range(draw(st.integers(1, 8))):
        rule = {"chain": "input", "action": draw(st.sampled_from(["accept", "drop", "reject"]))}
        if draw(st.booleans()):
            rule["sources"] = draw(st.lists(st.sampled_from(addrs), min_size=1, max_size=3))
            rule["sources_negate"] = draw(st.booleans())
        if draw(st.booleans()):
            rule["destinations"] = draw(st.lists(st.sampled_from(dsts), min_size=1, max_size=2))
        proto = draw(st.sampled_from(["any", "tcp", "udp"]))
        rule["protocol"] = proto
        if proto != "any":
            if draw(st.booleans()):
                rule["dports"] = draw(ports)
            if draw(st.integers(0, 3)) == 0:
                rule["sports"] = draw(st.sampled_from([["1-1023"], ["20000-29999"]]))
        if draw(st.integers(0, 3)) == 0:
            rule["in_interface"] = draw(st.sampled_from([server.dev, "rs+", "nope0"]))
        if draw(st.integers(0, 4)) == 0:
            rule["states"] = draw(st.sampled_from([["new"], ["established"]]))
        if draw(st.integers(0, 3)) == 0:
            # compiled in (after cases.NOW) with a time match: one the kernel's clock has
            # passed (on any machine whose clock is past 2026-11-25), one it has not
            rule["expires_at"] = draw(st.sampled_from(EXPIRIES)).isoformat()
        rules.append(rule)
    return {
        "version": 1,
        "rulesets": [{"name": "random", "rules": rules}],
        "devices": [
            {
                "name": "server",
                "rulesets": ["random"],
                "stateful": draw(st.booleans()),
                "default_policy": {"input": draw(st.sampled_from(["drop", "reject", "accept"]))},
            }
        ],
    }


@pytest.mark.parametrize("backend", ["nft", "nft-native"])
@given(st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_tracer_agrees_with_the_kernel(pair, backend, data):
    client, server = pair
    doc_dict = data.draw(policy(client, server))
    try:
        doc = PolicyDocument.from_dict(doc_dict)
    except Exception as exc:  # a drawn rule mixing families is refused, rightly
        assert "only" in str(exc)
        return
    threshold = data.draw(st.sampled_from([1, 8]))
    # segments of 1-2 kernel rules: the cut of long rule-set chains, on these small policies
    segment = data.draw(st.sampled_from([None, 2]))
    with mock.patch.multiple(
        segments,
        SEGMENT_MAX=segment or segments.SEGMENT_MAX,
        SEGMENT_EVERY=segment or segments.SEGMENT_EVERY,
    ):
        bundle = compile_device(
            doc, "server", options=CompileOptions(ipset_threshold=threshold), now=cases.NOW
        )
    reset(server, backend)
    load(server, bundle, backend)
    tracer = Tracer(bundle.program, now=datetime.now(UTC))  # as the kernel's clock
    base = next(_sport_base)
    probes, expected = [], []
    for proto, v6, port, fixed in itertools.product(
        ("tcp", "udp"), (False, True), PORTS, (False, True)
    ):
        src, dst = (client.addr6, server.addr6) if v6 else (client.addr4, server.addr4)
        sport = base + len(probes) % 10 if fixed else None
        probe = {"proto": proto, "host": dst, "port": port}
        if sport:
            probe["sport"] = sport
        packet = Packet.from_params(
            {
                "protocol": proto,
                "source": src,
                "destination": dst,
                "sport": str(sport or EPHEMERAL),
                "dport": str(port),
                "in_interface": server.dev,
            }
        )
        verdict = tracer.trace(packet)
        if proto == "tcp" and verdict.verdict == "accept":
            # a connect also needs the handshake's last ACK (state established): if that is
            # rejected, the ICMP error may or may not (rate limits) kill the connection,
            # so the outcome says nothing about the tracer
            ack = tracer.trace(dataclasses.replace(packet, state="established"))
            if ack.verdict == "reject":
                continue
        probes.append(probe)
        expected.append(verdict)
    got = client.probe(probes, timeout=0.5)
    wrong = [
        (p, e.verdict, e.tag)
        for p, e, g in zip(probes, expected, got, strict=True)
        if (e.verdict == "accept") != g
    ]
    assert not wrong, f"{wrong}\n{bundle.iptables_v4}\n{bundle.iptables_v6}"


# neighbour solicitations (ICMPv6 135) sent with a chosen hop limit; the target address
# names the probe. The kernel fills in the checksum of a raw ICMPv6 socket.
SEND_NS = (
    "import json, socket, struct, sys\n"
    "dst, probes = sys.argv[1], json.loads(sys.argv[2])\n"
    "for hops, target in probes:\n"
    "    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)\n"
    "    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)\n"
    "    body = struct.pack('!BBHI', 135, 0, 0, 0)\n"
    "    s.sendto(body + socket.inet_pton(socket.AF_INET6, target), (dst, 0))\n"
    "    s.close()\n"
)
# the solicitations that passed the filter table's INPUT: a raw socket gets its copy after
# the LOCAL_IN hook and before neighbour discovery's own hop-limit check (which drops a
# routed one whatever the firewall says), so what it sees is the firewall's verdict alone
SEEN_NS = (
    "import json, select, socket, time\n"
    "s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)\n"
    "print('ready', flush=True)\n"
    "seen, end = [], time.monotonic() + float(input())\n"
    "while (left := end - time.monotonic()) > 0:\n"
    "    if select.select([s], [], [], left)[0]:\n"
    "        data = s.recv(2048)\n"
    "        if data[0] == 135:\n"
    "            seen.append(socket.inet_ntop(socket.AF_INET6, data[8:24]))\n"
    "print(json.dumps(seen), flush=True)\n"
)
ND_HOPS = {255: "::255", 64: "::64"}  # hop limit → the target's interface id


def nd_document(stateful: bool) -> dict:
    """Input default drop: only the system ND accepts let a solicitation in."""
    return {
        "version": 1,
        "rulesets": [
            {
                "name": "web",
                "rules": [
                    {"chain": "input", "action": "accept", "dports": ["7001"], "protocol": "tcp"}
                ],
            }
        ],
        "devices": [
            {
                "name": "server",
                "rulesets": ["web"],
                "stateful": stateful,
                "default_policy": {"input": "drop", "output": "drop"},
            }
        ],
    }


def solicitations_seen(client, server, targets: dict[int, str]) -> set[str]:
    """Send one solicitation per hop limit from `client`; the targets `server` got."""
    listener = server.popen(
        sys.executable,
        "-c",
        SEEN_NS,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listener.stdout is not None and listener.stdin is not None
    assert listener.stdout.readline().strip() == "ready"
    listener.stdin.write("1.5\n")
    listener.stdin.flush()
    client.run(
        sys.executable,
        "-c",
        SEND_NS,
        server.addr6,
        json.dumps([[hops, target] for hops, target in targets.items()]),
    )
    return set(json.loads(listener.stdout.readline()))


@pytest.mark.parametrize("stateful", [True, False])
@pytest.mark.parametrize("backend", ["legacy", *DATAPLANES])
def test_neighbour_discovery_hop_limit_agrees_with_the_kernel(pair, backend, stateful):
    """A solicitation with hop limit 255 is the system ND accept's; a routed one (64) is
    not (`-m hl --hl-eq 255` / `ip6 hoplimit 255`): the tracer says what the kernel does."""
    client, server = pair
    bundle = compile_device(
        PolicyDocument.from_dict(nd_document(stateful)), "server", now=cases.NOW
    )
    reset(server, backend)
    try:
        load(server, bundle, backend)
        prefix = server.addr6.split("::")[0]
        targets = {hops: prefix + suffix for hops, suffix in ND_HOPS.items()}
        seen = solicitations_seen(client, server, targets)
    finally:
        reset(server, backend)
    tracer = Tracer(bundle.program)
    traced = {
        hops: tracer.trace(
            Packet.from_params(
                {
                    "protocol": "icmpv6",
                    "icmp_type": "135",
                    "source": client.addr6,
                    "destination": server.addr6,
                    "in_interface": server.dev,
                    # no state: the tracer's default for ND is conntrack's, untracked
                    "hop_limit": str(hops),
                }
            )
        ).verdict
        for hops in targets
    }
    got = {hops: target in seen for hops, target in targets.items()}
    assert got == {255: True, 64: False}, (got, seen)
    assert {hops: verdict == "accept" for hops, verdict in traced.items()} == got
