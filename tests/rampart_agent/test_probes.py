"""The agent's health probes: the HTTP(S) kind, how failures are named, and the checks on
an apply request's http probes (400 naming the field, kernel untouched)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rampart_agent.engine import AgentError
from rampart_agent.host import probe_label, run_probe
from tests.rampart_agent.engine_env import bundle


@pytest.fixture
def web() -> Iterator[str]:
    """A loopback HTTP server: /ok 200, /moved 301 (not followed), else 500."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            code = {"/ok": 200, "/moved": 301}.get(self.path.split("?")[0], 500)
            self.send_response(code)
            if code == 301:
                self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_probe_compares_the_status(web):
    assert run_probe({"type": "http", "url": f"{web}/ok?x=1", "expect_status": 200})
    assert run_probe({"type": "http", "url": f"{web}/ok"})  # 200 when not given
    assert not run_probe({"type": "http", "url": f"{web}/other", "expect_status": 200})
    assert run_probe({"type": "http", "url": f"{web}/other", "expect_status": 500})
    assert run_probe({"type": "http", "url": f"{web}/moved", "expect_status": 301})


def test_http_probe_to_a_closed_port_fails_within_its_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not run_probe({"type": "http", "url": f"http://127.0.0.1:{port}/", "timeout": 0.5})
    # TLS to a plain-HTTP listener fails the handshake: a failed probe, not a crash
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"https://127.0.0.1:{s.getsockname()[1]}/"
        assert not run_probe({"type": "http", "url": url, "timeout": 0.3})


def test_probe_labels_name_the_probe():
    assert probe_label({"type": "tcp", "host": "198.18.0.1", "port": 22}) == "tcp 198.18.0.1:22"
    assert probe_label({"type": "icmp", "host": "198.18.0.1"}) == "icmp 198.18.0.1"
    assert probe_label({"type": "http", "url": "https://h/x"}) == "http https://h/x 200"


@pytest.mark.parametrize(
    ("probe", "field"),
    [
        ({"type": "http"}, "probes[1].url"),
        ({"type": "http", "url": "ftp://h/"}, "probes[1].url"),
        ({"type": "http", "url": "http:///x"}, "probes[1].url"),
        ({"type": "http", "url": "http://h:0/"}, "probes[1].url"),
        ({"type": "http", "url": "http://h/ x"}, "probes[1].url"),
        ({"type": "http", "url": "http://h/", "expect_status": "200"}, "probes[1].expect_status"),
        ({"type": "http", "url": "http://h/", "expect_status": 700}, "probes[1].expect_status"),
        ({"type": "http", "url": "http://h/", "timeout": 61}, "probes[1].timeout"),
    ],
)
def test_a_malformed_http_probe_is_400_naming_the_field(env, probe, field):
    engine, dp, _, _ = env
    before = len(dp.payloads), json.dumps(dp.tables, sort_keys=True)
    good = {"type": "http", "url": "https://198.18.0.1/health", "expect_status": 204}
    with pytest.raises(AgentError) as exc:
        engine.apply(
            {"bundle": bundle(), "version": 1, "confirm_timeout": 30, "probes": [good, probe]}
        )
    assert exc.value.status == 400 and exc.value.body["field"] == field
    assert (len(dp.payloads), json.dumps(dp.tables, sort_keys=True)) == before


def test_a_failed_http_probe_rolls_back_naming_it(env):
    engine, dp, _, probes = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    probes["ok"] = False
    probe = {"type": "http", "url": "https://198.18.0.1/health", "expect_status": 204}
    with pytest.raises(AgentError) as exc:
        engine.apply(
            {"bundle": bundle(["-j DROP"]), "version": 2, "confirm_timeout": 30, "probes": [probe]}
        )
    assert exc.value.body["result"] == "rolled_back"
    assert "probe failed: http https://198.18.0.1/health 204" in str(exc.value)
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]
