"""Real packets: a rule that expires leaves the kernel on time with nobody acting.

The compiler's bundle, with a rule expiring ~20 s from now, is applied by the real agent
(`rampart-agent apply` in an rpt_ namespace, no console anywhere); new TCP connections the
rule allows get through before its expiry and are refused right after it, on both iptables
backends and native nftables at once (the kernel's `-m time --datestop` / `meta time`
does it, not a redeploy).
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest

from compiler import PolicyDocument, compile_device, with_nft
from tests.rampart_agent.agentns import BACKENDS, agent, write
from tests.support.netns import Netns, host_pair, needs_netns

pytestmark = [*needs_netns, pytest.mark.slow]

TEMP_PORT, KEPT_PORT = 7443, 7444
LIFETIME = timedelta(seconds=20)


def document(client: str, expires_at: datetime) -> dict:
    """The server drops new input by default; the client may reach TEMP_PORT until
    `expires_at` and KEPT_PORT for good."""
    rule = {"chain": "input", "action": "accept", "sources": [client], "protocol": "tcp"}
    return {
        "version": 1,
        "rulesets": [
            {
                "name": "temporary-access",
                "rules": [
                    {**rule, "dports": [str(TEMP_PORT)], "expires_at": expires_at.isoformat()},
                    {**rule, "dports": [str(KEPT_PORT)]},
                ],
            }
        ],
        "devices": [
            {
                "name": "srv",
                "rulesets": ["temporary-access"],
                "stateful": True,
                "default_policy": {"input": "drop", "forward": "drop", "output": "accept"},
            }
        ],
    }


def reaches(client: Netns, server: Netns) -> list[bool]:
    """New connections from client to [TEMP_PORT, KEPT_PORT]."""
    return client.probe(
        [{"proto": "tcp", "host": server.addr4, "port": p} for p in (TEMP_PORT, KEPT_PORT)],
        timeout=0.3,
    )


def test_expiring_rule_closes_within_a_second_of_expiry_without_console(tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    expires = now + LIFETIME
    with ExitStack() as stack:
        hosts = {}
        for backend in [*BACKENDS, "nft-native"]:  # native nftables: `meta time <`
            client, server = stack.enter_context(host_pair("exp" + backend[0]))
            server.listen(tcp=[TEMP_PORT, KEPT_PORT])
            bundle = with_nft(
                compile_device(
                    PolicyDocument.from_dict(document(client.addr4, expires)), "srv", now=now
                )
            )
            assert "-m time --datestop" in bundle.iptables_v4 and "meta time < " in bundle.nft
            state = tmp_path / backend
            path = write(tmp_path / f"{backend}.json", bundle.to_dict(rules=False))
            out = agent(server, backend, state, "apply", path, "--confirm-timeout", "0")
            assert json.loads(out.stdout)["result"] == "applied", out.stdout
            assert reaches(client, server) == [True, True], backend
            hosts[backend] = (client, server, state)
        assert datetime.now(UTC) < expires - timedelta(seconds=3), "set-up took too long"

        # probe each backend until TEMP_PORT is refused (at most 60 s after the expiry);
        # a probe's SYN leaves between its start and its end (seconds relative to expiry)
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds() - 2))
        last_open: dict[str, tuple[float, float]] = {}
        closed: dict[str, tuple[float, float]] = {}
        deadline = expires + timedelta(seconds=60)
        while len(closed) < len(hosts) and datetime.now(UTC) < deadline:
            for backend, (client, server, _) in hosts.items():
                if backend in closed:
                    continue
                started = (datetime.now(UTC) - expires).total_seconds()
                temp, kept = reaches(client, server)
                window = (started, (datetime.now(UTC) - expires).total_seconds())
                assert kept, f"{backend}: the rule without expiry stopped matching"
                if temp:
                    last_open[backend] = window
                else:
                    closed[backend] = window
            time.sleep(0.1)
        print(f"\nexpiry at {expires.isoformat()}; seconds relative to it:")
        for backend in hosts:
            print(f"  {backend}: last open {last_open.get(backend)}, refused {closed.get(backend)}")
        for backend, (client, server, state) in hosts.items():
            assert backend in closed, f"{backend}: still open 60 s after the expiry"
            # refused only after the expiry, and at most 60 s after it
            assert 0 < closed[backend][1] <= 60, closed
            # open until shortly before the expiry: the time match closed it, nothing else
            assert last_open[backend][1] > -2.5, last_open
            assert reaches(client, server) == [False, True]
            status = json.loads(agent(server, backend, state, "status").stdout)
            assert not status["drift"]["drifted"], status["drift"]["diff"]
