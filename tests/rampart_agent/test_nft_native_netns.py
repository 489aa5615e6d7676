"""Real kernel, native nftables dataplane (`--dataplane nft-native`): the agent CLI applies
compiled bundles carrying their `nft` script into `table inet rampart` of an rpt_ namespace.

Real TCP/UDP/ICMP traffic: accept, drop and reject; DNAT; counters equal to the packets
sent (kernel rules and set-compiled elements); drift of a hand-added rule; a bundle the
kernel refuses mid-transaction leaves the previous table exactly; iptables-nft rules of
other owners (a Docker-like chain) are left alone.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compiler import CompileOptions
from compiler.ir import SHAPES
from rampart_agent.protocol import bundle_hash
from tests.rampart_agent.agentns import AGENT, ROOT, add_foreign_rules, agent, policy, write
from tests.rampart_agent.compiled import bundle_file
from tests.rampart_agent.test_agent_kill_netns import KILLS, wait_for
from tests.support.netns import Netns, connect, host_pair, namespace, needs_netns

pytestmark = needs_netns

BACKEND = "nft-native"
U = {name: f"00000000-0000-4000-8000-0000000000{i:02d}" for i, name in enumerate("abcdefgh", 1)}
ACCEPT_TCP, REJECT_TCP, DROPPED_TCP, ACCEPT_UDP, DROP_UDP, NAT_PORT = (
    7001,
    7002,
    7003,
    7004,
    7005,
    8080,
)
AGENT_PORT = 8745  # the device's default agent port: management access
COUNTER_RE = re.compile(r" packets \d+ bytes \d+")
SEND = (
    "import socket, sys\n"
    "fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
    "for _ in range(int(sys.argv[3])):\n"
    "    with socket.socket(fam, socket.SOCK_DGRAM) as s:\n"
    "        s.sendto(b'x', (sys.argv[1], int(sys.argv[2])))\n"
)


def document(client: Netns, server: Netns) -> dict:
    src = [client.addr4, client.addr6]
    tcp = {"chain": "input", "sources": src, "protocol": "tcp"}
    udp = {"chain": "input", "sources": src, "protocol": "udp"}
    return {
        "version": 1,
        "rulesets": [
            {
                "name": "svc",
                "rules": [
                    {"id": U["a"], **tcp, "action": "accept", "dports": [str(ACCEPT_TCP)]},
                    {
                        "id": U["b"],
                        **tcp,
                        "action": "reject",
                        "reject_with": "tcp-reset",
                        "dports": [str(REJECT_TCP)],
                    },
                    {"id": U["c"], **udp, "action": "accept", "dports": [str(ACCEPT_UDP)]},
                    {"id": U["d"], **udp, "action": "drop", "dports": [str(DROP_UDP)]},
                    {
                        "id": U["e"],
                        "chain": "input",
                        "action": "accept",
                        "protocol": "icmp",
                        "icmp_type": "echo-request",
                    },
                ],
                "nat": [
                    {
                        "type": "dnat",
                        "protocol": "tcp",
                        "dports": [str(NAT_PORT)],
                        "to": f"{server.addr4}:{ACCEPT_TCP}",
                    }
                ],
            }
        ],
        "devices": [
            {
                "name": "srv",
                "rulesets": ["svc"],
                "default_policy": {"input": "drop", "forward": "drop", "output": "accept"},
                "management_sources": [client.addr4],
            }
        ],
    }


def status(server: Netns, state: Path) -> dict:
    return json.loads(agent(server, BACKEND, state, "status").stdout)


def send_udp(client: Netns, host: str, port: int, count: int) -> None:
    client.run(sys.executable, "-c", SEND, host, str(port), str(count))


def table(ns: Netns) -> str:
    """Our table without counter values (what a failed apply must leave exactly)."""
    return COUNTER_RE.sub("", ns.run("nft", "list", "table", "inet", "rampart").stdout)


def ours(ns: Netns, uuid: str) -> dict:
    """The first IPv4 kernel rule of a policy rule in our table (with its handle)."""
    listed = json.loads(ns.run("nft", "-j", "list", "table", "inet", "rampart").stdout)
    return next(
        item["rule"]
        for item in listed["nftables"]
        if "rule" in item
        and item["rule"]["chain"].startswith("filter4_")
        and str(item["rule"].get("comment", "")).startswith(f"rpt:{uuid}:")
    )


def ours_all(ns: Netns) -> list[dict]:
    """Every rule of our table, as `nft -j` lists it."""
    listed = json.loads(ns.run("nft", "-j", "list", "table", "inet", "rampart").stdout)
    return [item["rule"] for item in listed["nftables"] if "rule" in item]


def packets_of(rule: dict) -> int:
    return next(s["counter"]["packets"] for s in rule["expr"] if "counter" in s)


def test_traffic_counters_drift_and_others_rules(tmp_path):
    with host_pair("nfa") as (client, server):
        server.listen(
            tcp=[ACCEPT_TCP, REJECT_TCP, DROPPED_TCP, AGENT_PORT], udp=[ACCEPT_UDP, DROP_UDP]
        )
        add_foreign_rules(server, "nft")  # a Docker-like chain in iptables-nft
        others = server.run("iptables-nft-save").stdout
        state = tmp_path / "state"
        out = agent(
            server,
            BACKEND,
            state,
            "apply",
            bundle_file(document(client, server), tmp_path / "b.json"),
        )
        assert json.loads(out.stdout)["result"] == "applied"

        s4, s6 = server.addr4, server.addr6
        codes = connect(
            client,
            [(h, p) for h in (s4, s6) for p in (ACCEPT_TCP, REJECT_TCP, DROPPED_TCP)]
            + [(s4, NAT_PORT)],
        )
        assert codes[:3] == [0, errno.ECONNREFUSED, errno.EAGAIN], codes  # v4
        assert codes[3:6] == [0, errno.ECONNREFUSED, errno.EAGAIN], codes  # v6
        assert codes[6] == 0  # DNAT 8080 -> 7001 (no server on 8080)
        # anti-lockout: the agent port from the (v4) management source, whatever the rules
        assert connect(client, [(s4, AGENT_PORT), (s6, AGENT_PORT)]) == [0, errno.EAGAIN]
        probes = [
            {"proto": "udp", "host": h, "port": p} for h in (s4, s6) for p in (ACCEPT_UDP, DROP_UDP)
        ]
        assert client.probe(probes) == [True, False, True, False]
        assert client.run("ping", "-c1", "-W1", s4, check=False).returncode == 0

        before = status(server, state)
        assert before["backend"] == BACKEND
        assert not before["drift"]["drifted"], before["drift"]["diff"]
        send_udp(client, s4, ACCEPT_UDP, 7)
        send_udp(client, s6, DROP_UDP, 5)
        after = status(server, state)["counters"]
        grown = {
            u: after[u]["packets"] - before["counters"].get(u, {}).get("packets", 0) for u in after
        }
        assert grown[U["c"]] == 7 and grown[U["d"]] == 5, grown
        assert after[U["a"]]["packets"] == 3  # v4 + v6 + the DNAT'ed SYN, one each
        assert after[U["b"]]["packets"] == 2

        # the other owners' iptables-nft rules are untouched
        assert server.run("iptables-nft-save").stdout.split("\n", 1)[1].count(
            "DOCKER-USER"
        ) == others.split("\n", 1)[1].count("DOCKER-USER")

        # a rule of ours edited by hand, its comment kept, is drift (its kernel text)
        rule = ours(server, U["a"])
        server.run(
            "nft", "replace", "rule", "inet", "rampart", rule["chain"], "handle",
            str(rule["handle"]), "tcp", "dport", "7009", "counter", "accept",
            "comment", f'"{rule["comment"]}"',
        )  # fmt: skip
        edited = status(server, state)["drift"]
        assert edited["drifted"] and "7009" in edited["diff"], edited
        # a rule added by hand inside our table is drift, named by its target
        server.run(
            "nft",
            "insert",
            "rule",
            "inet",
            "rampart",
            "filter4_RPT-INPUT",
            "tcp",
            "dport",
            "9999",
            "accept",
        )
        drifted = status(server, state)["drift"]
        assert drifted["drifted"] and "(no rpt comment) -j ACCEPT" in drifted["diff"], drifted


def test_refused_bundle_leaves_previous_table_exactly(tmp_path):
    with host_pair("nfr") as (client, server):
        server.listen(tcp=[ACCEPT_TCP])
        state = tmp_path / "state"
        agent(
            server,
            BACKEND,
            state,
            "apply",
            bundle_file(document(client, server), tmp_path / "b.json"),
        )
        before = table(server)
        # parses in nft, refused by the kernel at commit: a jump loop between two chains
        raw = json.loads((tmp_path / "b.json").read_text())
        loop = "\tchain filter4_RPT-LOOPA {\n\t\tjump filter4_RPT-LOOPB\n\t}\n"
        loop += "\tchain filter4_RPT-LOOPB {\n\t\tjump filter4_RPT-LOOPA\n\t}\n"
        raw["nft"] = raw["nft"][: -len("}\n")] + loop + "}\n"
        raw["nft"] = raw["nft"].replace(
            "\tchain filter4_RPT-INPUT {\n",
            "\tchain filter4_RPT-INPUT {\n\t\tjump filter4_RPT-LOOPA\n",
        )
        raw["hash"] = bundle_hash(raw)
        res = agent(
            server, BACKEND, state, "apply", write(tmp_path / "loop.json", raw), check=False
        )
        assert res.returncode != 0 and "kernel refused the bundle" in res.stderr, res.stderr
        assert table(server) == before
        assert connect(client, [(server.addr4, ACCEPT_TCP)]) == [0]
        assert not status(server, state)["drift"]["drifted"]

        # a bundle compiled for iptables only (no `nft` script) is refused the same way
        plain = {k: v for k, v in raw.items() if k != "nft"}
        plain["format"] = 2
        plain["hash"] = bundle_hash(plain)
        res = agent(server, BACKEND, state, "apply", write(tmp_path / "p.json", plain), check=False)
        assert res.returncode != 0 and "has no nft script" in res.stderr, res.stderr
        assert table(server) == before


def test_set_compiled_blocks_count_per_rule(tmp_path):
    """Seven disjoint accepts become one concatenated set; each rule's count is the sum of
    its elements' counters, equal to the datagrams sent to it."""
    with host_pair("nfs") as (client, server):
        ports = list(range(9001, 9008))
        server.listen(udp=ports)
        rules = [
            {
                "id": f"00000000-0000-4000-8000-0000000001{i:02d}",
                "chain": "input",
                "action": "accept",
                "sources": [client.addr4],
                "protocol": "udp",
                "dports": [str(p)],
            }
            for i, p in enumerate(ports)
        ]
        doc = {
            "version": 1,
            "rulesets": [{"name": "many", "rules": rules}],
            "devices": [{"name": "srv", "rulesets": ["many"]}],
        }
        options = CompileOptions(
            set_compile=True, set_types=frozenset(kind for kind, _ in SHAPES.values())
        )
        path = bundle_file(doc, tmp_path / "s.json", options)
        assert "flags interval" in json.loads(Path(path).read_text())["nft"]
        state = tmp_path / "state"
        agent(server, BACKEND, state, "apply", path)
        listed = server.run("nft", "list", "table", "inet", "rampart").stdout
        assert ". udp . 9001 counter packets 0" in listed
        for i, port in enumerate(ports):
            send_udp(client, server.addr4, port, i + 1)
        got = status(server, state)
        assert not got["drift"]["drifted"], got["drift"]["diff"]
        counts = {u: c["packets"] for u, c in got["counters"].items()}
        assert counts == {r["id"]: i + 1 for i, r in enumerate(rules)}, counts

        # an element added by hand is drift, named by its set and value
        (name,) = json.loads(Path(path).read_text())["sets"]
        server.run(
            "nft", "add", "element", "inet", "rampart", name, "{ 198.18.99.0/24 . udp . 9999 }"
        )
        drift = status(server, state)["drift"]
        assert drift["drifted"] and f"+set {name} element 198.18.99.0/24,udp:9999" in drift["diff"]


def test_rollback_and_boot_restore(tmp_path):
    """An unconfirmed apply rolled back leaves the confirmed table; after the table is
    gone (a reboot), `restore` loads the confirmed bundle again."""
    with host_pair("nfb") as (client, server):
        server.listen(tcp=[ACCEPT_TCP, DROPPED_TCP])
        state = tmp_path / "state"
        doc = document(client, server)
        agent(server, BACKEND, state, "apply", bundle_file(doc, tmp_path / "v1.json"))
        confirmed = table(server)
        targets = [(server.addr4, ACCEPT_TCP), (server.addr4, DROPPED_TCP)]
        assert connect(client, targets) == [0, errno.EAGAIN]

        rules = doc["rulesets"][0]["rules"]
        rules.append({**rules[0], "id": U["f"], "dports": [str(DROPPED_TCP)]})
        v2_path = bundle_file(doc, tmp_path / "v2.json")
        out = agent(server, BACKEND, state, "apply", v2_path, "--confirm-timeout", "300")
        assert json.loads(out.stdout)["result"] == "applied"
        assert connect(client, targets) == [0, 0]
        agent(server, BACKEND, state, "rollback")
        assert table(server) == confirmed
        assert connect(client, targets) == [0, errno.EAGAIN]

        server.run("nft", "delete", "table", "inet", "rampart")
        assert connect(client, targets) == [0, 0]
        agent(server, BACKEND, state, "restore")
        assert table(server) == confirmed
        assert connect(client, targets) == [0, errno.EAGAIN]


def test_switching_dataplanes_removes_what_the_other_left(tmp_path):
    """iptables-legacy -> nft-native: our legacy chains and ipsets go; nft-native ->
    iptables-nft: our nft table goes. Foreign rules stay throughout."""
    with host_pair("nfw") as (client, server):
        add_foreign_rules(server, "nft")
        doc = document(client, server)
        path = bundle_file(doc, tmp_path / "b.json")
        agent(server, "legacy", tmp_path / "s1", "apply", path)
        assert "RPT-INPUT" in server.run("iptables-legacy-save").stdout

        out = agent(server, BACKEND, tmp_path / "s2", "apply", path)
        assert json.loads(out.stdout)["result"] == "applied"
        assert "other iptables backend" in out.stderr
        for tool in ("iptables-legacy-save", "ip6tables-legacy-save"):
            assert "RPT-" not in server.run(tool).stdout
        assert "table inet rampart" in server.run("nft", "list", "tables").stdout

        out = agent(server, "nft", tmp_path / "s3", "apply", path)
        assert json.loads(out.stdout)["result"] == "applied"
        assert "table inet rampart" not in server.run("nft", "list", "tables").stdout
        saved = server.run("iptables-nft-save").stdout
        assert "RPT-INPUT" in saved and "DOCKER-USER" in saved

        # `auto` moves an agent whose confirmed bundle carries its nft script to nft-native:
        # the start loads our table, then removes our iptables-nft chains (not Docker's)
        out = agent(server, "auto", tmp_path / "s3", "restore")
        assert "dataplane nft-native (auto: the confirmed bundle has its nft script)" in out.stderr
        assert "table inet rampart" in server.run("nft", "list", "tables").stdout
        saved = server.run("iptables-nft-save").stdout
        assert "RPT-" not in saved and "DOCKER-USER" in saved

        # ... and keeps one whose confirmed bundle is iptables only on iptables
        plain = write(tmp_path / "plain.json", policy(client.addr4, client.addr6))
        agent(server, "nft", tmp_path / "s4", "apply", plain)
        assert status_on(server, "auto", tmp_path / "s4")["backend"] == "nft"  # iptables-nft
        # forcing nft-native under it: one line, nothing touched
        held = others(server, counters=False)
        res = agent(server, BACKEND, tmp_path / "s4", "restore", check=False)
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "compiled for iptables" in res.stderr
        assert others(server, counters=False) == held


def status_on(ns: Netns, dataplane: str, state: Path) -> dict:
    return json.loads(agent(ns, dataplane, state, "status").stdout)


def others(ns: Netns, counters: bool = True) -> str:
    """Every iptables-nft rule (with its counters), both families; comment lines, which
    carry the time of the listing, dropped."""
    return "".join(
        ln + "\n"
        for cmd in ("iptables-nft-save", "ip6tables-nft-save")
        for ln in ns.run(cmd, *(["-c"] if counters else [])).stdout.splitlines()
        if not ln.startswith("#")
    )


def test_auto_is_native_here_and_leaves_docker_tables_alone(tmp_path):
    """On an nftables host (this one: `iptables -V` says nf_tables) the default `auto`
    runs natively, enrolls as nft-native, and its apply, rollback and boot restore leave a
    pre-existing iptables-nft `ip filter` table (Docker's) exactly: rules and counters."""
    with host_pair("nfo") as (client, server):
        if "nf_tables" not in server.run("iptables", "-V").stdout:
            pytest.skip("iptables here is not the nf_tables variant: auto is legacy")
        server.listen(tcp=[ACCEPT_TCP, DROPPED_TCP])
        add_foreign_rules(server, "nft")  # DOCKER-USER + an INPUT accept of tcp/8080
        assert connect(client, [(server.addr4, NAT_PORT)]) == [errno.ECONNREFUSED]
        before = others(server)
        assert re.search(r"\[[1-9]\d*:\d+\] -A INPUT -p tcp -m tcp --dport 8080", before)
        state = tmp_path / "state"
        facts = json.loads(agent(server, "auto", state, "facts").stdout)
        assert facts["backend"] == BACKEND  # what the console compiles native bundles for

        doc = document(client, server)
        out = agent(server, "auto", state, "apply", bundle_file(doc, tmp_path / "v1.json"))
        assert json.loads(out.stdout)["result"] == "applied"
        assert "dataplane nft-native (auto: the host runs nftables)" in out.stderr
        confirmed = table(server)
        targets = [(server.addr4, ACCEPT_TCP), (server.addr4, DROPPED_TCP)]
        assert connect(client, targets) == [0, errno.EAGAIN]
        assert others(server) == before

        rules = doc["rulesets"][0]["rules"]
        rules.append({**rules[0], "id": U["f"], "dports": [str(DROPPED_TCP)]})
        v2 = bundle_file(doc, tmp_path / "v2.json")
        agent(server, "auto", state, "apply", v2, "--confirm-timeout", "300")
        assert connect(client, targets) == [0, 0]
        agent(server, "auto", state, "rollback")
        assert table(server) == confirmed
        assert status_on(server, "auto", state)["backend"] == BACKEND
        # the SYNs above passed their INPUT chain too (an accept ends our table only) but
        # matched none of their rules: every counter of theirs is what it was
        server.run("nft", "delete", "table", "inet", "rampart")  # a reboot, for our table
        agent(server, "auto", state, "restore")
        assert table(server) == confirmed
        assert connect(client, targets) == [0, errno.EAGAIN]
        assert others(server) == before


def big_document(seed: int, n: int = 1000) -> dict:
    """n tcp/udp rules from distinct /24s of 198.18.0.0/15, ports drawn by `seed`."""
    rng = random.Random(seed)
    rules = [
        {
            "chain": "input",
            "action": rng.choice(["accept", "drop", "reject"]),
            "sources": [f"198.{18 + i // 256}.{i % 256}.0/24"],
            "protocol": rng.choice(["tcp", "udp"]),
            "dports": [str(rng.randint(1, 65535))],
        }
        for i in range(n)
    ]
    return {
        "version": 1,
        "rulesets": [{"name": f"big{seed}", "rules": rules}],
        "devices": [{"name": "srv", "rulesets": [f"big{seed}"]}],
    }


@pytest.mark.slow
@pytest.mark.faults  # the kill -9 campaign: `make test-faults`
def test_kill_minus_9_during_native_apply_never_leaves_a_mix(tmp_path):
    """As the iptables campaign (test_agent_kill_netns.py): the agent and its `nft` die
    together at random points of an apply; `restore` then finds old or new, never a mix."""
    rng = random.Random(16)
    files = {
        k: bundle_file(big_document(seed), tmp_path / f"{k}.json")
        for k, seed in (("A", 1), ("B", 2))
    }
    hashes = {k: json.loads(Path(f).read_text())["hash"] for k, f in files.items()}
    with namespace("nfk") as ns:
        state = tmp_path / "state"
        fps, took = {}, []
        for k in ("A", "B"):
            t0 = time.monotonic()
            agent(ns, BACKEND, state, "apply", files[k])
            took.append(time.monotonic() - t0)
            fps[hashes[k]] = table(ns)
        assert fps[hashes["A"]] != fps[hashes["B"]]
        window = max(took) * 1.3
        current, interrupted, outcomes = "B", 0, []
        for i in range(KILLS):
            nxt = "A" if current == "B" else "B"
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns.name, "env", f"PYTHONPATH={ROOT}", *AGENT, "apply",
                 files[nxt], "--state-dir", str(state), "--dataplane", BACKEND],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            if i % 2:
                time.sleep(0.1 + (i + rng.random()) / KILLS * (window - 0.1))
            else:  # inside the kernel work: from the journal to the records
                wait_for(state / "run" / "journal.json", window)
                time.sleep(rng.random() * 0.3)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            restored = json.loads(agent(ns, BACKEND, state, "restore").stdout)
            interrupted += restored["reason"] == "interrupted apply undone at start"
            fp = table(ns)
            assert fp in fps.values(), "the kernel holds a mix of two policies"
            assert fp == fps[restored["restored"]], "the kernel does not hold the confirmed one"
            current = "A" if restored["restored"] == hashes["A"] else "B"
            outcomes.append("new" if current == nxt else "old")
        assert not status(ns, state)["drift"]["drifted"]
        print(f"nft-native: window {window:.2f}s outcomes {outcomes}, {interrupted} in the journal")
        assert interrupted >= 1  # the campaign really hit the middle of an apply


def test_a_rule_change_inside_a_block_is_an_element_update(tmp_path):
    """Remove one rule of a set-compiled block, edit another, add a third: one element
    transaction; the table is not reloaded (the lookup rule keeps its counter), the kept
    rules keep their counts, the removed and edited ones report what they lose."""
    with host_pair("nfe") as (client, server):
        ports = list(range(9001, 9009))
        server.listen(udp=[*ports, 9100, 9105])

        def rule(i: int, port: int) -> dict:
            return {
                "id": f"00000000-0000-4000-8000-0000000003{i:02d}",
                "chain": "input",
                "action": "accept",
                "sources": [client.addr4],
                "protocol": "udp",
                "dports": [str(port)],
            }

        def doc(rules: list[dict]) -> dict:
            return {
                "version": 1,
                "rulesets": [{"name": "blk", "rules": rules}],
                "devices": [{"name": "srv", "rulesets": ["blk"]}],
            }

        options = CompileOptions(
            set_compile=True, set_types=frozenset(kind for kind, _ in SHAPES.values())
        )
        v1 = [rule(i, p) for i, p in enumerate(ports)]
        state = tmp_path / "state"
        agent(server, BACKEND, state, "apply", bundle_file(doc(v1), tmp_path / "1.json", options))
        for i, port in enumerate(ports):
            send_udp(client, server.addr4, port, i + 1)
        (lookup,) = [
            r for r in ours_all(server) if str(r.get("comment", "")).startswith("rpt:sys:set:")
        ]
        assert packets_of(lookup) == sum(range(1, 9))

        v2 = [r for r in v1 if r["id"] != v1[3]["id"]] + [rule(20, 9100)]
        v2[4] = {**v2[4], "dports": ["9105"]}  # v1[5]: edited (its tag changes)
        out = agent(
            server, BACKEND, state, "apply", bundle_file(doc(v2), tmp_path / "2.json", options)
        )
        answer = json.loads(out.stdout)
        lost = answer["counter_reset"]["lost"]
        assert lost == {
            v1[3]["id"]: {"packets": 4, "bytes": lost[v1[3]["id"]]["bytes"], "gone": True},
            v1[5]["id"]: {"packets": 6, "bytes": lost[v1[5]["id"]]["bytes"]},
        }, lost
        (after,) = [r for r in ours_all(server) if r.get("comment") == lookup["comment"]]
        assert packets_of(after) == packets_of(lookup)  # not reloaded: its counter stayed
        got = status(server, state)
        assert not got["drift"]["drifted"], got["drift"]["diff"]
        counts = {u: c["packets"] for u, c in got["counters"].items()}
        assert counts == {
            **{v1[i]["id"]: i + 1 for i in (0, 1, 2, 4, 6, 7)},
            v1[5]["id"]: 0,
            v2[-1]["id"]: 0,
        }, counts
        probes = [
            {"proto": "udp", "host": server.addr4, "port": p} for p in (9004, 9100, 9105, 9006)
        ]
        assert client.probe(probes) == [False, True, True, False]
