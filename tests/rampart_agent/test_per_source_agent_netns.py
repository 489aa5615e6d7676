"""The agent with `rate_limit_per_source` on every dataplane, the rule reaching two
destinations (two kernel rules per family): a source gets its burst once in the whole
rule, the buckets the traffic filled (native nft: elements of a dynamic set in Rampart's
table) are no drift, a changed limit starts full, and rollback and (native nft) boot
restore give back the confirmed policy without drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from compiler import PolicyDocument, compile_device, with_nft
from tests.rampart_agent.agentns import agent, drift, write
from tests.support.netns import Netns, host_pair, needs_netns
from tests.support.udp_tries import echoed

pytestmark = needs_netns

PORT = 7212
RID = "00000000-0000-4000-8000-0000000000a2"


def bundle_file(hosts: list[str], burst: int, path: Path) -> str:
    rule = {
        "id": RID,
        "chain": "input",
        "action": "accept",
        "protocol": "udp",
        "dports": [str(PORT)],
        "destinations": hosts,
        "rate_limit_per_source": {"rate": "1/hour", "burst": burst},
        "log": True,
    }
    doc = {
        "version": 1,
        "rulesets": [{"name": "ps", "rules": [rule]}],
        "devices": [{"name": "srv", "rulesets": ["ps"], "default_policy": {"input": "drop"}}],
    }
    compiled = compile_device(PolicyDocument.from_dict(doc), "srv", now=datetime.now(UTC))
    return write(path, with_nft(compiled).to_dict(rules=False))


def accepted(client: Netns, source: str, hosts: list[str]) -> int:
    """How many of 4 datagrams to each destination came back (one after the other)."""
    tries = [(source, h, PORT) for h in hosts for _ in range(4)]
    return echoed(client, tries)


@pytest.mark.parametrize("backend", ["legacy", "nft", "nft-native"])
def test_apply_drift_rollback_restore_with_per_source_buckets(backend, tmp_path):
    with host_pair("aps") as (client, server):
        second4 = server.addr4.rsplit(".", 1)[0] + ".4"
        server.run("ip", "addr", "add", f"{second4}/24", "dev", server.dev)  # type: ignore[attr-defined]
        hosts = [server.addr4, second4]
        server.listen(udp=[PORT])
        state = tmp_path / "state"
        v1 = bundle_file(hosts, 3, tmp_path / "v1.json")
        assert json.loads(agent(server, backend, state, "apply", v1).stdout)["result"] == "applied"
        assert accepted(client, client.addr4, hosts) == 3  # one bucket in both kernel rules
        if backend == "nft-native":  # the source's entries are in the table's listing
            listed = server.run("nft", "list", "table", "inet", "rampart").stdout
            assert f"{client.addr4} limit rate 1/hour burst 3 packets expires" in listed
        found = drift(server, backend, state)
        assert not found["drifted"], found["diff"]

        v2 = bundle_file(hosts, 4, tmp_path / "v2.json")
        out = agent(server, backend, state, "apply", v2, "--confirm-timeout", "300")
        assert json.loads(out.stdout)["result"] == "applied"
        assert accepted(client, client.addr4, hosts) == 4  # a changed limit starts full
        found = drift(server, backend, state)
        assert not found["drifted"], found["diff"]

        agent(server, backend, state, "rollback")
        found = drift(server, backend, state)
        assert not found["drifted"], found["diff"]
        if backend == "nft-native":  # a reboot: the table is gone, restore loads it again
            server.run("nft", "delete", "table", "inet", "rampart")
            agent(server, backend, state, "restore")
            found = drift(server, backend, state)
            assert not found["drifted"], found["diff"]
            assert "update @rps" in server.run("nft", "list", "table", "inet", "rampart").stdout
