"""The agent with `rate_limit`'s shared buckets (compiler/shared_limit.py) on every
dataplane: the bundle applies, its readback shows no drift once the bucket is spent, a
changed limit starts with a full bucket, and rollback and (native nft) boot restore give
back the confirmed policy without drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rampart_agent.agentns import limit_lifecycle
from tests.rampart_agent.compiled import one_rule_bundle
from tests.support.netns import host_pair, needs_netns
from tests.support.udp_tries import echoed

pytestmark = needs_netns

PORT = 7211
RID = "00000000-0000-4000-8000-0000000000a1"


def bundle_file(sources: list[str], burst: int, path: Path) -> str:
    rule = {
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
    return one_rule_bundle(rule, path)


@pytest.mark.parametrize("backend", ["legacy", "nft", "nft-native"])
def test_apply_drift_rollback_restore_with_a_shared_bucket(backend, tmp_path):
    with host_pair("asl") as (client, server):
        second4 = client.addr4.rsplit(".", 1)[0] + ".3"
        client.run("ip", "addr", "add", f"{second4}/24", "dev", client.dev)  # type: ignore[attr-defined]
        sources = [client.addr4, second4]
        server.listen(udp=[PORT])

        def accepted() -> int:
            """How many of 4 datagrams from each source came back: one bucket for both."""
            return echoed(client, [(s, server.addr4, PORT) for s in sources for _ in range(4)])

        limit_lifecycle(
            server,
            backend,
            tmp_path,
            lambda burst, path: bundle_file(sources, burst, path),
            accepted,
            'limit name "rpr',
        )
