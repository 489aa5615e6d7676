"""Real kernel: a rule added by hand shows in the drift report by its kernel text and its
place relative to Rampart's jump."""

import json

import pytest

from tests.rampart_agent.agentns import BACKENDS, add_foreign_rules, agent, policy, tool, write
from tests.support.netns import namespace, needs_netns

pytestmark = needs_netns


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_added_rules_show_their_text_and_place(backend, tmp_path):
    with namespace("drf") as ns:
        add_foreign_rules(ns, backend)  # -A INPUT ... --dport 8080: after our jump
        state = tmp_path / "state"
        agent(
            ns,
            backend,
            state,
            "apply",
            write(tmp_path / "p.json", policy("198.18.0.1", "2001:db8::1")),
        )
        status = json.loads(agent(ns, backend, state, "status").stdout)
        assert not status["drift"]["drifted"], status["drift"]["diff"]

        ns.run(tool(backend), "-I", "INPUT", "1", "-p", "tcp", "--dport", "9100", "-j", "ACCEPT")
        drift = json.loads(agent(ns, backend, state, "status").stdout)["drift"]
        assert drift["drifted"]
        diff = drift["diff"]
        assert "+v4 filter INPUT #2 -> RPT-INPUT" in diff
        assert (
            "v4 filter INPUT #1: -A INPUT -p tcp -m tcp --dport 9100 -j ACCEPT  "
            "[before Rampart's jump to RPT-INPUT (#2): runs first]"
        ) in diff
        assert "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT  [after Rampart's jump" in diff
        assert "v6 filter INPUT" not in diff  # IPv6 did not drift
        first = drift["rules"][0]
        assert first["rule"] == "-A INPUT -p tcp -m tcp --dport 9100 -j ACCEPT"
        assert first["where"].startswith("before Rampart's jump")

        ns.run(
            tool(backend), "-I", "RPT-INPUT", "1", "-p", "tcp", "--dport", "9101", "-j", "ACCEPT"
        )
        diff = json.loads(agent(ns, backend, state, "status").stdout)["drift"]["diff"]
        assert (
            "v4 filter RPT-INPUT #1: -A RPT-INPUT -p tcp -m tcp --dport 9101 -j ACCEPT  "
            "[inside Rampart's chain]"
        ) in diff
