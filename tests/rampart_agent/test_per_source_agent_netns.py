"""The agent with `rate_limit_per_source` on every dataplane, the rule reaching two
destinations (two kernel rules per family): a source gets its burst once in the whole
rule, the buckets the traffic filled (native nft: elements of a dynamic set in Rampart's
table) are no drift, a changed limit starts full, and rollback and (native nft) boot
restore give back the confirmed policy without drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rampart_agent.agentns import limit_lifecycle
from tests.rampart_agent.compiled import one_rule_bundle
from tests.support.netns import host_pair, needs_netns
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
    return one_rule_bundle(rule, path)


@pytest.mark.parametrize("backend", ["legacy", "nft", "nft-native"])
def test_apply_drift_rollback_restore_with_per_source_buckets(backend, tmp_path):
    with host_pair("aps") as (client, server):
        second4 = server.addr4.rsplit(".", 1)[0] + ".4"
        server.run("ip", "addr", "add", f"{second4}/24", "dev", server.dev)  # type: ignore[attr-defined]
        hosts = [server.addr4, second4]
        server.listen(udp=[PORT])

        def accepted() -> int:
            """How many of 4 datagrams to each destination came back: one bucket for the
            source in both kernel rules."""
            return echoed(client, [(client.addr4, h, PORT) for h in hosts for _ in range(4)])

        def listed() -> None:
            if backend == "nft-native":  # the source's entries are in the table's listing
                text = server.run("nft", "list", "table", "inet", "rampart").stdout
                assert f"{client.addr4} limit rate 1/hour burst 3 packets expires" in text

        limit_lifecycle(
            server,
            backend,
            tmp_path,
            lambda burst, path: bundle_file(hosts, burst, path),
            accepted,
            "update @rps",
            after_apply=listed,
        )
