"""Real kernel: the agent reports exactly what its own rewrites take from the counters.

The client sends a known number of UDP datagrams (each from its own socket: a new flow
that reaches our rules past the conntrack shortcut) and the counts are checked exactly.
"""

import json
import sys

import pytest

from rampart_agent.sample import make_bundle
from tests.rampart_agent.agentns import BACKENDS, agent, write
from tests.support.netns import Netns, host_pair, needs_netns

pytestmark = needs_netns

A, B, C, D = (f"0000000{c}-aaaa-4000-8000-000000000000" for c in "abcd")
PORT = {A: 9001, B: 9002, C: 9003, D: 9004}
SEND = (
    "import socket, sys\n"
    "for _ in range(int(sys.argv[3])):\n"
    "    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
    "        s.sendto(b'x', (sys.argv[1], int(sys.argv[2])))\n"
)


def send(client: Netns, server: Netns, uuid: str, count: int) -> None:
    client.run(sys.executable, "-c", SEND, server.addr4, str(PORT[uuid]), str(count))


def bundle(client: Netns, order: list[str], ports: dict[str, int] = PORT) -> dict:
    """RPT-INPUT: loopback, conntrack, then one udp rule per uuid in `order` (B is a
    `log: true` rule: LOG and ACCEPT with one tag), then drop."""
    rules = []
    for uuid in order:
        match = f"-s {client.addr4}/32 -p udp -m udp --dport {ports[uuid]}"
        tag = f'-m comment --comment "rpt:{uuid}:00000001"'
        if uuid == B:
            rules.append(f'{match} {tag} -j LOG --log-prefix "rpt:{uuid[:8]} "')
        rules.append(f"{match} {tag} -j ACCEPT")
    chain = [
        "-i lo -m comment --comment rpt:sys:loopback -j ACCEPT",
        "-m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment rpt:sys:conntrack "
        "-j ACCEPT",
        *rules,
        "-m comment --comment rpt:sys:default -j DROP",
    ]
    return make_bundle(
        v4={"filter": {"chains": {"RPT-INPUT": chain}, "jumps": {"INPUT": ["RPT-INPUT"]}}}
    )


def packets(status: dict) -> dict[str, int]:
    """The rules that counted packets, and how many."""
    return {u: c["packets"] for u, c in status["counters"].items() if c["packets"]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rewrite_reports_the_counts_it_takes_and_restarts_keep_the_record(backend, tmp_path):
    with host_pair("cnt") as (client, server):
        state = tmp_path / "state"

        def apply(n: int, order: list[str], ports: dict[str, int] = PORT) -> dict:
            path = write(tmp_path / f"v{n}.json", bundle(client, order, ports))
            return json.loads(agent(server, backend, state, "apply", path).stdout)

        def status() -> dict:  # each a new agent process: the record outlives it
            return json.loads(agent(server, backend, state, "status").stdout)

        assert "counter_reset" not in apply(1, [A, B, C])  # an empty kernel loses nothing
        send(client, server, A, 5)
        send(client, server, B, 3)
        first = status()
        assert packets(first) == {A: 5, B: 3}  # B's LOG rule is not counted
        assert first["counter_epoch"]["generation"] == 0

        # one rule added before the drop: an in-place edit, nothing lost
        assert "counter_reset" not in apply(2, [A, B, C, D])
        send(client, server, A, 2)
        assert packets(status()) == {A: 7, B: 3}
        # A moved to the end: no rule keeps its place, the chain is rewritten
        answer = apply(3, [B, C, D, A])
        lost = {u: c["packets"] for u, c in answer["counter_reset"]["lost"].items()}
        assert lost == {A: 7, B: 3}
        assert packets(status()) == {}  # the kernel counts them from zero
        send(client, server, A, 1)
        later = status()
        assert packets(later) == {A: 1}
        epoch = later["counter_epoch"]
        assert epoch["generation"] == answer["counter_reset"]["generation"]
        assert epoch["resets"][-1]["lost"] == answer["counter_reset"]["lost"]
        assert epoch["boot_id"] == answer["counter_reset"]["boot_id"]

        # C edited in the middle of the chain: only C's rule is replaced
        send(client, server, B, 4)
        send(client, server, C, 2)
        answer = apply(4, [B, C, D, A], {**PORT, C: 9013})
        assert {u: c["packets"] for u, c in answer["counter_reset"]["lost"].items()} == {C: 2}
        assert answer["counter_reset"]["generation"] == epoch["generation"] + 1
        assert packets(status()) == {A: 1, B: 4}

        # B deleted after more hits: its final count, marked gone (no later reading comes)
        send(client, server, B, 2)
        answer = apply(5, [C, D, A], {**PORT, C: 9013})
        assert answer["counter_reset"]["lost"][B]["packets"] == 6
        assert answer["counter_reset"]["lost"][B]["gone"] is True
        assert packets(status()) == {A: 1}
