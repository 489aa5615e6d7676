"""Real kernel: traffic before/after applies, incremental edits, foreign rules, rejection."""

import json
import time

import pytest

from rampart_agent.dataplane import DataplaneError, IptablesDataplane
from rampart_agent.ruleset import FILL_SPLIT_FROM
from rampart_agent.runner import Runner
from rampart_agent.sample import make_bundle, set_name
from tests.rampart_agent.agentns import (
    BACKENDS,
    add_foreign_rules,
    agent,
    policy,
    snapshot,
    tool,
    write,
)
from tests.support.netns import host_pair, namespace, needs_netns

pytestmark = needs_netns


@pytest.mark.parametrize("backend", BACKENDS)
def test_traffic_incremental_counters_and_foreign_rules(backend, tmp_path):
    with host_pair("agt") as (client, server):
        server.listen(tcp=[80, 443])
        add_foreign_rules(server, backend)
        targets = [(h, p) for h in (server.addr4, server.addr6) for p in (80, 443)]
        probes = [{"proto": "tcp", "host": h, "port": p} for h, p in targets]
        assert client.probe(probes) == [True] * 4  # no policy yet: everything reaches

        state = tmp_path / "state"
        v1 = policy(client.addr4, client.addr6, ports=(443,))
        out = agent(server, backend, state, "apply", write(tmp_path / "v1.json", v1))
        assert json.loads(out.stdout)["result"] == "applied"
        assert client.probe(probes) == [False, True, False, True]

        # one rule added: an in-place edit of RPT-WEB, the 443 rule keeps its counters
        status = json.loads(agent(server, backend, state, "status").stdout)
        uuid1 = "00000001-aaaa-4000-8000-000000000000"
        assert status["counters"][uuid1]["packets"] >= 2
        assert status["backend"] == backend and not status["drift"]["drifted"], status["drift"]
        v2 = policy(client.addr4, client.addr6, ports=(443, 80))
        agent(server, backend, state, "apply", write(tmp_path / "v2.json", v2))
        assert client.probe(probes) == [True] * 4
        status2 = json.loads(agent(server, backend, state, "status").stdout)
        # kept (+2 new SYNs), not reset by a rewrite
        assert status2["counters"][uuid1]["packets"] >= status["counters"][uuid1]["packets"] + 2
        assert status2["applied"]["version"] == 2 and not status2["drift"]["drifted"]

        for v6 in (False, True):
            rules = server.run(tool(backend, v6), "-S", "INPUT").stdout.splitlines()
            assert rules[1] == '-A INPUT -m comment --comment "rpt:jump" -j RPT-INPUT'
            assert sum("RPT-INPUT" in r for r in rules) == 1
            assert "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT" in rules
            assert "-A DOCKER-USER -j RETURN" in server.run(tool(backend, v6), "-S").stdout

        # hand-made drift inside our chain is reported, and the next apply repairs it
        server.run(tool(backend), "-D", "RPT-INPUT", "1")
        status3 = json.loads(agent(server, backend, state, "status").stdout)
        assert status3["drift"]["drifted"] and "rpt:sys:loopback" in status3["drift"]["diff"]
        v3 = policy(client.addr4, client.addr6, ports=(443, 80, 22))
        agent(server, backend, state, "apply", write(tmp_path / "v3.json", v3))
        status4 = json.loads(agent(server, backend, state, "status").stdout)
        assert not status4["drift"]["drifted"], status4["drift"]["diff"]

        # removing the policy (an empty bundle) leaves only the other owners' rules
        empty = policy(client.addr4, client.addr6, ports=())
        agent(server, backend, state, "apply", write(tmp_path / "v4.json", empty))
        assert client.probe(probes) == [False] * 4
        sets = server.run("ipset", "list", "-n").stdout.split()
        assert len(sets) == 2  # the sets of the previous bundles were destroyed


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_rejection_leaves_previous_policy_exactly(backend, tmp_path):
    with namespace("agr") as ns:
        add_foreign_rules(ns, backend)
        state = tmp_path / "state"
        v1 = policy("198.18.200.1", "2001:2:0:c8::1")
        agent(ns, backend, state, "apply", write(tmp_path / "v1.json", v1))
        before = snapshot(ns, backend)
        # passes `iptables-restore --test` but the kernel refuses it: a chain loop, in v6 only
        # (so v4 and the new sets are applied first and must be undone)
        loop = policy(
            "198.18.200.2", "2001:2:0:c8::2", extra_web=["-j RPT-LOOP"], web_chain="RPT-WEB2"
        )
        text = loop["iptables_v6"].replace(
            ":RPT-WEB2 - [0:0]", ":RPT-WEB2 - [0:0]\n:RPT-LOOP - [0:0]"
        )
        text = text.replace("COMMIT", "-A RPT-LOOP -j RPT-WEB2\nCOMMIT")
        from rampart_agent.protocol import bundle_hash

        loop["iptables_v6"] = text
        loop["hash"] = bundle_hash(loop)
        res = agent(ns, backend, state, "apply", write(tmp_path / "loop.json", loop), check=False)
        assert res.returncode != 0
        err = res.stderr.strip().splitlines()
        assert err[-1].startswith("rampart-agent: error: kernel refused the bundle"), err
        assert "Traceback" not in res.stderr
        assert snapshot(ns, backend) == before


def test_rules_in_the_other_backend_are_reported_and_removed(tmp_path):
    """The one test that mixes backends in a namespace: ours left in legacy, host is nft."""
    with namespace("ago") as ns:
        v1 = policy("198.18.201.1", "2001:2:0:c9::1")
        agent(ns, "legacy", tmp_path / "old", "apply", write(tmp_path / "v1.json", v1))
        assert "RPT-INPUT" in ns.run("iptables-legacy-save").stdout
        out = agent(ns, "nft", tmp_path / "new", "apply", str(tmp_path / "v1.json"))
        assert json.loads(out.stdout)["result"] == "applied"
        assert "other iptables backend" in out.stderr
        assert "RPT-" not in ns.run("iptables-legacy-save").stdout
        assert "RPT-" not in ns.run("ip6tables-legacy-save").stdout
        assert "RPT-INPUT" in ns.run("iptables-nft-save").stdout
        status = json.loads(agent(ns, "nft", tmp_path / "new", "status").stdout)
        assert status["backend"] == "nft"


@pytest.mark.parametrize("backend", BACKENDS)
def test_restore_fed_in_parts_reaches_the_kernel_only_at_commit(backend):
    """The apply feeds the restore tool everything before the first COMMIT, writes its
    journal while the tool parses, then sends COMMIT: nothing may reach the kernel
    earlier, and an aborted restore leaves no trace. The tool was started ahead
    (keep_tools_ready), as a serving agent does."""
    with namespace("agp") as ns:
        dp = IptablesDataplane(backend, Runner(prefix=["ip", "netns", "exec", ns.name]))
        dp.keep_tools_ready()
        time.sleep(0.2)
        head = "*filter\n:RPT-P - [0:0]\n-A RPT-P -s 198.18.0.9/32 -j DROP\n"

        def saved() -> str:
            return ns.run(tool(backend, suffix="-save")).stdout

        pending = dp.begin_restore("v4", head)
        time.sleep(0.2)  # the tool has read and parsed the head
        assert "RPT-P" not in saved()
        pending.abort()
        assert "RPT-P" not in saved()
        dp.begin_restore("v4", head).commit("COMMIT\n")
        assert "-A RPT-P -s 198.18.0.9/32 -j DROP" in saved()
        with pytest.raises(DataplaneError, match="line 2 failed"):
            dp.begin_restore("v4", "*filter\n-A RPT-NONE -j DROP\n").commit("COMMIT\n")
        dp.keep_tools_ready(False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_large_set_filled_in_pieces_is_whole_before_its_rule(backend, tmp_path):
    """A set above FILL_SPLIT_FROM entries is filled by several ipset processes at once;
    the rule naming it commits after all of them: the kernel holds every entry, and a
    packet from the last entry is matched."""
    with host_pair("agf") as (client, server):
        server.listen(tcp=[443])
        n = FILL_SPLIT_FROM + 5_000
        entries = [f"198.19.{i // 128}.{2 * (i % 128)}/32" for i in range(n - 1)]
        entries.append(f"{client.addr4}/32")
        name = set_name(4, entries)
        rules = [
            f'-m set --match-set {name} src -m comment --comment "rpt:sys:set" -j ACCEPT',
            "-p tcp -m tcp --dport 443 -m comment --comment rpt:sys:default -j DROP",
        ]
        bundle = make_bundle(
            v4={"filter": {"chains": {"RPT-INPUT": rules}, "jumps": {"INPUT": ["RPT-INPUT"]}}},
            sets={name: entries},
        )
        agent(server, backend, tmp_path / "state", "apply", write(tmp_path / "b.json", bundle))
        header = server.run("ipset", "list", "-t", name).stdout
        assert f"Number of entries: {n}" in header
        assert client.probe([{"proto": "tcp", "host": server.addr4, "port": 443}]) == [True]


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_small_sets_filled_side_by_side_are_whole_before_their_rules(backend, tmp_path):
    """Sets below FILL_SPLIT_FROM holding that many entries between them (a set-compiled
    policy's) are dealt to several ipset processes; the rules commit after all of them:
    every set holds every entry, and a packet from the last entry of the last set is
    matched."""
    with host_pair("ags") as (client, server):
        server.listen(tcp=[443])
        per_set = FILL_SPLIT_FROM // 8 + 1
        groups = [
            [f"198.19.{k * 16 + i // 250}.{i % 250}/32" for i in range(per_set)] for k in range(8)
        ]
        groups[-1][-1] = f"{client.addr4}/32"
        names = [set_name(4, entries) for entries in groups]
        rules = [
            f"-m set --match-set {n} src -m comment --comment rpt:sys:set -j ACCEPT" for n in names
        ]
        rules.append("-p tcp -m tcp --dport 443 -m comment --comment rpt:sys:default -j DROP")
        bundle = make_bundle(
            v4={"filter": {"chains": {"RPT-INPUT": rules}, "jumps": {"INPUT": ["RPT-INPUT"]}}},
            sets=dict(zip(names, groups, strict=True)),
        )
        agent(server, backend, tmp_path / "state", "apply", write(tmp_path / "b.json", bundle))
        for name in names:
            header = server.run("ipset", "list", "-t", name).stdout
            assert f"Number of entries: {per_set}" in header
        assert client.probe([{"proto": "tcp", "host": server.addr4, "port": 443}]) == [True]
