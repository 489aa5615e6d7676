"""The agent's metrics: what the engine counts, the text format, the listener's refusals."""

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rampart_agent.engine import AgentError
from rampart_agent.metrics import (
    MetricsHandler,
    MetricsServer,
    exposition,
    rollback_class,
    serve_metrics,
)
from rampart_agent.sample import set_name
from tests.rampart_agent.agentns import ROOT
from tests.rampart_agent.engine_env import bundle


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value}, parsed by prometheus_client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(server) -> tuple[str, str]:
    host, port = server.server_address[:2]
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def test_apply_rollback_and_deadline_are_counted(env):
    engine, _, clock, probes = env
    s4 = set_name(4, ["198.18.1.0/24", "198.18.2.0/24"])
    rules = ["-j ACCEPT", f"-m set --match-set {s4} src -j ACCEPT"]
    sets = {s4: ["198.18.1.0/24", "198.18.2.0/24"]}
    engine.apply({"bundle": bundle(rules, v6=False, sets=sets), "version": 1, "confirm_timeout": 0})
    engine.apply({"bundle": bundle(["-j DROP"]), "version": 2, "confirm_timeout": 30})
    clock.t += 10
    server = serve_metrics("127.0.0.1:0", engine, api_listen="127.0.0.1:8745")
    try:
        content_type, text = scrape(server)
    finally:
        server.shutdown()
    assert content_type.startswith("text/plain; version=0.0.4")
    m = samples(text)
    assert m[("rampart_agent_applies_total", (("result", "applied"),))] == 2
    assert m[("rampart_agent_apply_duration_seconds_count", (("result", "applied"),))] == 2
    assert m[("rampart_agent_confirm_pending", ())] == 1
    assert m[("rampart_agent_confirm_deadline_seconds", ())] == pytest.approx(20)
    assert m[("rampart_agent_last_apply_success_timestamp_seconds", ())] == clock.t - 10
    # the pending bundle (v2) is what the kernel holds: one rule per family, no set
    assert m[("rampart_agent_rules_loaded", (("family", "v4"),))] == 1
    assert m[("rampart_agent_rules_loaded", (("family", "v6"),))] == 1
    assert m[("rampart_agent_sets_loaded", ())] == 0
    # three kernel changes (start, two applies) asked for the xtables lock
    assert m[("rampart_agent_xtables_lock_wait_seconds_count", ())] == 3

    clock.t += 21
    engine.check_deadline()  # no confirm: back to version 1 (two rules, one set of two)
    probes["ok"] = False
    probe = [{"type": "tcp", "host": "198.18.0.1", "port": 443}]
    request = {"bundle": bundle(["-j REJECT"]), "version": 3, "confirm_timeout": 30}
    with pytest.raises(AgentError):
        engine.apply({**request, "probes": probe})
    with pytest.raises(AgentError):  # a replay is refused before the kernel is touched
        engine.apply({"bundle": bundle(["-j REJECT"]), "version": 3, "confirm_timeout": 30})
    m = samples(exposition(engine))
    assert m[("rampart_agent_rollbacks_total", (("reason", "confirm_timeout"),))] == 1
    assert m[("rampart_agent_rollbacks_total", (("reason", "probe"),))] == 1
    assert m[("rampart_agent_applies_total", (("result", "rolled_back"),))] == 1
    assert m[("rampart_agent_applies_total", (("result", "refused_409"),))] == 1
    assert m[("rampart_agent_confirm_pending", ())] == 0
    assert m[("rampart_agent_confirm_deadline_seconds", ())] == 0
    assert m[("rampart_agent_rules_loaded", (("family", "v4"),))] == 2
    assert m[("rampart_agent_rules_loaded", (("family", "v6"),))] == 0
    assert m[("rampart_agent_sets_loaded", ())] == 1
    assert m[("rampart_agent_set_entries_loaded", ())] == 2


def test_histogram_buckets_are_cumulative(env):
    engine, *_ = env
    engine.metrics.apply_finished("applied", 0.3, 1.0)
    engine.metrics.apply_finished("applied", 7.0, 2.0)
    m = samples(engine.metrics.render({}, 3.0))
    bucket = "rampart_agent_apply_duration_seconds_bucket"
    assert m[(bucket, (("le", "0.25"), ("result", "applied")))] == 0
    assert m[(bucket, (("le", "0.5"), ("result", "applied")))] == 1
    assert m[(bucket, (("le", "10.0"), ("result", "applied")))] == 2
    assert m[(bucket, (("le", "+Inf"), ("result", "applied")))] == 2
    assert m[("rampart_agent_apply_duration_seconds_sum", (("result", "applied"),))] == 7.3


@pytest.mark.parametrize(
    ("reason", "name"),
    [
        ("no confirm from the console before the deadline", "confirm_timeout"),
        ("probe failed: tcp 198.18.0.1:443", "probe"),
        ("apply failed after the kernel changed (OSError: x)", "apply_error"),
        ("interrupted apply undone at start", "interrupted"),
        ("agent restarted before the confirm", "restart"),
        ("rollback requested by the console", "requested"),
        ("local rollback", "requested"),
        ('something "new"\nwith a newline', "other"),
    ],
)
def test_rollback_reasons_become_a_bounded_label(reason, name):
    assert rollback_class(reason) == name


def test_listener_refuses_the_api_port_and_serves_only_metrics(env):
    engine, *_ = env
    with pytest.raises(ValueError, match="agent API"):
        serve_metrics("127.0.0.1:8745", engine, api_listen="0.0.0.0:8745")
    with pytest.raises(ValueError, match="HOST:PORT"):
        serve_metrics("9100", engine, api_listen="0.0.0.0:8745")
    server = serve_metrics("127.0.0.1:0", engine, api_listen="0.0.0.0:8745")
    try:
        host, port = server.server_address[:2]
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"http://{host}:{port}/v1/status", timeout=5)
        assert exc.value.code == 404
    finally:
        server.shutdown()


def test_idle_connections_are_capped_and_time_out(env, monkeypatch):
    """The listener has no authentication: a peer opening connections and sending nothing
    gets at most MAX_CONNECTIONS threads, each closed after the silence timeout."""
    engine, *_ = env
    monkeypatch.setattr(MetricsHandler, "timeout", 0.5)
    # within the listen backlog (5): more would wait on TCP's retries, not on the agent
    monkeypatch.setattr(MetricsServer, "MAX_CONNECTIONS", 3)
    server = serve_metrics("127.0.0.1:0", engine, api_listen="0.0.0.0:8745")
    address = server.server_address[:2]
    try:
        held = [
            socket.create_connection(address, timeout=5)
            for _ in range(MetricsServer.MAX_CONNECTIONS)
        ]
        time.sleep(0.2)
        extra = socket.create_connection(address, timeout=2)
        t0 = time.monotonic()
        assert extra.recv(1) == b""  # closed at accept, no thread
        assert time.monotonic() - t0 < 0.3  # not by the 0.5 s silence timeout
        extra.close()
        time.sleep(1.0)
        for sock in held:
            assert sock.recv(1) == b""  # the silent ones timed out: their slots are free
            sock.close()
        assert "rampart_agent" in scrape(server)[1]
    finally:
        server.shutdown()
        server.server_close()


def test_serve_refuses_metrics_on_its_own_port(tmp_path):
    """The CLI says why in one line and exits non-zero: the API port is never plain HTTP."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rampart_agent.cli",
            "serve",
            "--state-dir",
            str(tmp_path),
            "--dataplane",
            "recording",
            "--listen",
            f"127.0.0.1:{port}",
            "--metrics-listen",
            f"[::1]:{port}",
            "--resync-interval",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"--metrics-listen [::1]:{port}: port {port} is the agent API's" in proc.stderr
    assert "Traceback" not in proc.stderr
