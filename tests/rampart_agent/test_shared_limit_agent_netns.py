"""The agent with `rate_limit`'s shared buckets (compiler/shared_limit.py) on every
dataplane: the bundle applies, its readback shows no drift once the bucket is spent, a
changed limit starts with a full bucket, and rollback and (native nft) boot restore give
back the confirmed policy without drift."""

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

PORT = 7211
RID = "00000000-0000-4000-8000-0000000000a1"


def bundle_file(sources: list[str], burst: int, path: Path) -> str:
    doc = {
        "version": 1,
        "rulesets": [
            {
                "name": "rl",
                "rules": [
                    {
                        "id": RID,
                        "chain": "input",
                        "action": "accept",
                        "protocol": "udp",
                        "dports": [str(PORT)],
                        "sources": sources,
                        "rate_limit": "1/hour",
                        "burst": burst,
                        "log": True,
                    }
                ],
            }
        ],
        "devices": [{"name": "srv", "rulesets": ["rl"], "default_policy": {"input": "drop"}}],
    }
    compiled = compile_device(PolicyDocument.from_dict(doc), "srv", now=datetime.now(UTC))
    return write(path, with_nft(compiled).to_dict(rules=False))


def accepted(client: Netns, sources: list[str], host: str) -> int:
    """How many of 4 datagrams from each source came back (one after the other)."""
    tries = [(s, host, PORT) for s in sources for _ in range(4)]
    return echoed(client, tries)


@pytest.mark.parametrize("backend", ["legacy", "nft", "nft-native"])
def test_apply_drift_rollback_restore_with_a_shared_bucket(backend, tmp_path):
    with host_pair("asl") as (client, server):
        second4 = client.addr4.rsplit(".", 1)[0] + ".3"
        client.run("ip", "addr", "add", f"{second4}/24", "dev", client.dev)  # type: ignore[attr-defined]
        sources = [client.addr4, second4]
        server.listen(udp=[PORT])
        state = tmp_path / "state"
        v1 = bundle_file(sources, 3, tmp_path / "v1.json")
        assert json.loads(agent(server, backend, state, "apply", v1).stdout)["result"] == "applied"
        assert accepted(client, sources, server.addr4) == 3  # one bucket for both sources
        found = drift(server, backend, state)
        assert not found["drifted"], found["diff"]

        v2 = bundle_file(sources, 4, tmp_path / "v2.json")
        out = agent(server, backend, state, "apply", v2, "--confirm-timeout", "300")
        assert json.loads(out.stdout)["result"] == "applied"
        assert accepted(client, sources, server.addr4) == 4  # a changed limit starts full
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
            assert 'limit name "rpr' in server.run("nft", "list", "table", "inet", "rampart").stdout
