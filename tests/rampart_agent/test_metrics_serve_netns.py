"""A real `rampart-agent serve --metrics-listen` in a namespace: applied by a signed console
over HTTPS, scraped over plain HTTP on loopback, parsed by prometheus-client's parser."""

import json
import os
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

from rampart_agent import protocol
from rampart_agent.state import StateDir
from tests.rampart_agent.agentns import AGENT, ROOT, policy
from tests.support.netns import host_pair, needs_netns

pytestmark = needs_netns
CONSOLE = os.path.join(os.path.dirname(__file__), "console_cli.py")
SCRAPE = (
    "import sys, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1], timeout=5) as r:\n"
    "    sys.stdout.write(r.headers['Content-Type'] + '\\n' + r.read().decode())\n"
)
METRICS = "127.0.0.1:9745"


def call(client, key_file, agent_pub, url, method, path, body=None) -> dict:
    out = client.run(
        sys.executable,
        CONSOLE,
        str(key_file),
        agent_pub,
        url,
        method,
        path,
        "5",
        input=json.dumps(body) if body is not None else "",
        timeout=20,
    ).stdout
    return json.loads(out)


def scrape(ns) -> tuple[str, dict]:
    out = ns.run(sys.executable, "-c", SCRAPE, f"http://{METRICS}/metrics").stdout
    content_type, _, text = out.partition("\n")
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return content_type, values


def test_real_agent_exports_apply_metrics_on_its_own_listener(tmp_path):
    with host_pair("agm") as (client, server):
        key = protocol.generate_private_key()
        key_file = tmp_path / "console.pem"
        key_file.write_bytes(protocol.private_key_to_pem(key))
        state = StateDir(tmp_path / "agent")
        agent_pub = protocol.public_key_b64(state.ensure_identity())
        state.set_console_key(protocol.public_key_b64(key))
        proc = server.popen(
            "env",
            f"PYTHONPATH={ROOT}",
            *AGENT,
            "serve",
            "--state-dir",
            str(state.path),
            "--dataplane",
            "nft",
            "--listen",
            f"{server.addr4}:8745",
            "--metrics-listen",
            METRICS,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().startswith("ready")
        url = f"https://{server.addr4}:8745"

        content_type, m = scrape(server)
        assert content_type.startswith("text/plain; version=0.0.4")
        assert ("rampart_agent_applies_total", (("result", "applied"),)) not in m
        assert m[("rampart_agent_last_apply_success_timestamp_seconds", ())] == 0

        v1 = policy(client.addr4, client.addr6, ports=(8745,))
        r = call(
            client, key_file, agent_pub, url, "POST", "/v1/apply", {"bundle": v1, "version": 1}
        )
        assert r["status"] == 200, r
        r = call(client, key_file, agent_pub, url, "POST", "/v1/confirm", {"version": 1})
        assert r["body"]["result"] == "confirmed", r
        v2 = policy(client.addr4, client.addr6, ports=(8745, 443))
        before = time.time()
        r = call(
            client,
            key_file,
            agent_pub,
            url,
            "POST",
            "/v1/apply",
            {"bundle": v2, "version": 2, "confirm_timeout": 60},
        )
        assert r["status"] == 200, r

        _, m = scrape(server)
        assert m[("rampart_agent_applies_total", (("result", "applied"),))] == 2
        assert m[("rampart_agent_apply_duration_seconds_count", (("result", "applied"),))] == 2
        assert 0 < m[("rampart_agent_apply_duration_seconds_sum", (("result", "applied"),))] < 30
        assert m[("rampart_agent_confirm_pending", ())] == 1
        assert 30 < m[("rampart_agent_confirm_deadline_seconds", ())] <= 60
        last = m[("rampart_agent_last_apply_success_timestamp_seconds", ())]
        assert before - 1 <= last <= time.time() + 1
        # v2 holds, per family: 5 or 6 RPT-INPUT lines and two web rules; one set each
        assert m[("rampart_agent_rules_loaded", (("family", "v4"),))] == 6
        assert m[("rampart_agent_rules_loaded", (("family", "v6"),))] == 7
        assert m[("rampart_agent_sets_loaded", ())] == 2
        assert m[("rampart_agent_set_entries_loaded", ())] == 2
        # the start and the two applies each waited (0 s on nft) for the xtables lock
        assert m[("rampart_agent_xtables_lock_wait_seconds_count", ())] == 3

        r = call(client, key_file, agent_pub, url, "POST", "/v1/rollback", {})
        assert r["status"] == 200 and r["body"]["result"] == "rolled_back", r
        _, m = scrape(server)
        assert m[("rampart_agent_rollbacks_total", (("reason", "requested"),))] == 1
        assert m[("rampart_agent_confirm_pending", ())] == 0
        assert m[("rampart_agent_rules_loaded", (("family", "v4"),))] == 5
        # plain HTTP is on loopback only: the client cannot reach it, the API port stays TLS
        assert not client.tcp_ok(server.addr4, 9745)
