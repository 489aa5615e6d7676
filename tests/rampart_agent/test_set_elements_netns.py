"""Real kernel: set-compiled blocks keep per-rule counters, change element by element, and
show hand-made element changes as drift.

The policies are compiled by the real compiler with set compilation on: a run of
non-overlapping rules becomes one `-m set` rule over a `hash:net,port` set whose elements
carry their rule's tag and count their own packets.
"""

import datetime
import json
import re
import sys
from pathlib import Path

import pytest

from tests.rampart_agent.agentns import BACKENDS, agent, write
from tests.support.netns import Netns, host_pair, needs_netns

compiler = pytest.importorskip("compiler")

pytestmark = needs_netns

NOW = datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC)
R = [f"0000000{i}-bbbb-4000-8000-000000000000" for i in range(1, 5)]  # ports 9101..9104
X = [f"0000001{i}-cccc-4000-8000-000000000000" for i in range(0, 6)]  # ports 9001..9006
# drop 9001-9004 on an interface that does not exist: never matches, but the overlap test
# leaves interfaces out, so X[0..3] go one level (set) above it
D = "00000020-dddd-4000-8000-000000000000"
SEND = (
    "import socket, sys\n"
    "for _ in range(int(sys.argv[3])):\n"
    "    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
    "        s.sendto(b'x', (sys.argv[1], int(sys.argv[2])))\n"
)


def rule(uuid: str, client: Netns, port: str, action: str = "accept") -> dict:
    return {
        "id": uuid,
        "chain": "input",
        "action": action,
        "sources": [f"{client.addr4}/32"],
        "protocol": "udp",
        "dports": [port],
    }


def compiled(rules: list[dict]) -> dict:
    data = {
        "version": 1,
        "rulesets": [{"name": "blocks", "rules": rules}],
        "devices": [{"name": "srv", "rulesets": ["blocks"]}],
    }
    options = compiler.CompileOptions(set_compile=True)
    doc = compiler.PolicyDocument.from_dict(data)
    return compiler.compile_device(doc, "srv", options=options, now=NOW).to_dict(rules=False)


def lookup_sets(bundle: dict) -> dict[str, str]:
    """Set name -> the text of its add lines, for the bundle's lookup sets."""
    out: dict[str, str] = {}
    for line in bundle["ipsets"].splitlines():
        parts = line.split()
        if parts[0] == "create" and "comment" in parts:
            out[parts[1]] = ""
        elif parts[0] == "add" and parts[1] in out:
            out[parts[1]] += line + "\n"
    return out


def set_of(bundle: dict, uuid: str) -> str:
    """The lookup set holding `uuid`'s elements."""
    return next(name for name, adds in lookup_sets(bundle).items() if f"rpt:{uuid}:" in adds)


def send(client: Netns, server: Netns, port: int, count: int) -> None:
    client.run(sys.executable, "-c", SEND, server.addr4, str(port), str(count))


def packets(status: dict) -> dict[str, int]:
    return {u: c["packets"] for u, c in status["counters"].items() if c["packets"]}


def tables(server: Netns, backend: str) -> str:
    """The iptables rules with their counters: unchanged (and no traffic meanwhile) means no
    rule was rewritten — a rewritten rule restarts from zero."""
    lines = server.run(f"iptables-{backend}-save", "-c").stdout.splitlines()
    return "\n".join(ln for ln in lines if not ln.startswith("#"))  # no timestamps


def agent_calls(server: Netns, backend: str, tmp_path: Path):
    """`apply(n, bundle)` and `status()` of the agent on `server`, as parsed JSON answers."""
    state = tmp_path / "state"

    def apply(n: int, bundle: dict) -> dict:
        path = write(tmp_path / f"v{n}.json", bundle)
        return json.loads(agent(server, backend, state, "apply", path).stdout)

    def status() -> dict:
        return json.loads(agent(server, backend, state, "status").stdout)

    return apply, status


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_element_counters_per_rule_survive_a_move_between_blocks(backend, tmp_path):
    with host_pair("sel") as (client, server):
        apply, status = agent_calls(server, backend, tmp_path)

        base = [rule(u, client, str(9101 + i)) for i, u in enumerate(R)]
        xs = [rule(u, client, str(9001 + i)) for i, u in enumerate(X[:4])]
        v1 = compiled(base + xs)
        assert set_of(v1, X[0]) == set_of(v1, R[0])  # one block, one accept set
        apply(1, v1)
        send(client, server, 9001, 5)
        send(client, server, 9102, 2)
        first = status()
        assert packets(first) == {X[0]: 5, R[1]: 2}  # counted by their set elements
        assert not first["drift"]["drifted"]

        # a drop rule overlapping the X rules before them: they move to a level (set) above
        v2 = compiled(
            base + [{**rule(D, client, "9001-9004", "drop"), "in_interface": "rpt-nowhere"}] + xs
        )
        assert set_of(v2, X[0]) != set_of(v2, R[0])
        answer = apply(2, v2)
        lost = answer["counter_reset"]["lost"]
        assert lost[X[0]]["packets"] == 5 and "gone" not in lost[X[0]]
        assert R[1] not in lost  # stayed in its set: kept its element's counter
        send(client, server, 9001, 3)
        later = status()
        assert packets(later) == {X[0]: 3, R[1]: 2}  # 5 credited by the reset, 3 counted since
        assert not later["drift"]["drifted"]
        assert later["counter_epoch"]["resets"][-1]["lost"][X[0]]["packets"] == 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_change_inside_a_block_is_an_element_update_and_hand_edits_are_drift(backend, tmp_path):
    with host_pair("seu") as (client, server):
        apply, status = agent_calls(server, backend, tmp_path)

        xs = [rule(u, client, str(9001 + i)) for i, u in enumerate(X[:5])]
        v1 = compiled(xs)
        name = set_of(v1, X[0])
        apply(1, v1)
        send(client, server, 9001, 4)
        send(client, server, 9002, 1)
        before = tables(server, backend)

        # two rules deleted, one edited (port 9005 -> 9006), one added: same block, same set
        v2 = compiled([xs[0], xs[1], rule(X[4], client, "9006"), rule(X[5], client, "9007")])
        assert set_of(v2, X[0]) == name == set_of(v2, X[5])
        answer = apply(2, v2)
        assert tables(server, backend) == before  # no table written: elements only
        assert "counter_reset" not in answer  # X[2], X[3] had counted nothing
        send(client, server, 9006, 2)
        send(client, server, 9007, 1)
        send(client, server, 9003, 3)  # X[2] is gone: dropped, counted by nobody
        got = status()
        assert packets(got) == {X[0]: 4, X[1]: 1, X[4]: 2, X[5]: 1}
        assert not got["drift"]["drifted"]
        elements = server.run("ipset", "save", name).stdout
        assert "udp:9003" not in elements and "udp:9007" in elements

        # by hand: one element added, one of X[1]'s removed -> drift naming both
        server.run("ipset", "add", name, f"{client.addr4},udp:7777", "comment", "by-hand")
        server.run("ipset", "del", name, f"{client.addr4},udp:9002")
        drift = status()["drift"]
        assert drift["drifted"]
        diff = drift["diff"]
        assert re.search(
            rf"\+set {name} element {re.escape(client.addr4)},udp:7777 .*by-hand", diff
        )
        assert re.search(
            rf"-set {name} element {re.escape(client.addr4)},udp:9002 .*rpt:{X[1]}:", diff
        )
        # the next apply repairs it element by element: X[0] keeps its count
        apply(3, v1)
        fixed = status()
        assert not fixed["drift"]["drifted"], fixed["drift"]["diff"]
        assert packets(fixed)[X[0]] == 4
