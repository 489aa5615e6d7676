"""Health probes set from the console, run for real by the agent after the apply.

The agent is the real server and engine (recording dataplane) in threads of this process;
its probes are real: a TCP connect to a loopback port, a `ping`, an HTTP(S) GET to a
server of this test. A failed probe rolls back and the device deployment names it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from agents import services
from agents.client import AgentClient
from agents.models import DeviceDeployment
from rampart_agent.sample import make_bundle
from tests.agents.helpers import free_port, run_all
from tests.support.deploy import make_device

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback TCP port something listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


@pytest.fixture
def web() -> Iterator[str]:
    """A loopback HTTP server: /ok answers 200, /slow too after 1.5 s, anything else 503."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            if self.path == "/slow":
                time.sleep(1.5)
            self.send_response(200 if self.path in ("/ok", "/slow") else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _deploy(agent, policy, own: list[dict], **deploy) -> DeviceDeployment:
    _, group = policy
    device = make_device("web-1", group=group, agent=agent, probes=own)
    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=10, **deploy)
    run_all(deployment)
    return deployment.device_deployments.get()


def _rolled_back_naming(dd: DeviceDeployment, label: str) -> None:
    assert dd.state == "rolled_back", (dd.state, dd.error)
    assert f"probe failed: {label}" in dd.error
    assert dd.agent_response["result"] == "rolled_back"


def test_passing_probes_of_every_kind_confirm(agent, policy, listening, web):
    dd = _deploy(
        agent,
        policy,
        [
            {"type": "tcp", "host": "127.0.0.1", "port": listening, "timeout": 2},
            {"type": "icmp", "host": "127.0.0.1", "timeout": 2},
            {"type": "http", "url": f"{web}/ok", "expect_status": 200, "timeout": 2},
        ],
    )
    assert dd.state == "confirmed", dd.error
    assert agent.engine.status()["applied"]["confirmed"] is True


def test_failed_tcp_probe_rolls_back_naming_it(agent, policy, client, users, viewer_api):
    closed = free_port()
    dd = _deploy(agent, policy, [{"type": "tcp", "host": "127.0.0.1", "port": closed}])
    _rolled_back_naming(dd, f"tcp 127.0.0.1:{closed}")
    # the API and the dashboard show which probe failed
    data = viewer_api.get(f"/api/v1/deployments/{dd.deployment_id}/").json()
    assert f"probe failed: tcp 127.0.0.1:{closed}" in data["devices"][0]["error"]
    client.force_login(users["viewer"])
    page = client.get(reverse("dashboard:deployment", args=[dd.deployment_id])).content.decode()
    assert f"probe failed: tcp 127.0.0.1:{closed}" in page
    # the agent holds nothing new: the rollback left the (empty) confirmed policy
    status = agent.engine.status()
    assert (status["applied"] or {}).get("version") != dd.version
    assert status["last_rollback"]["version"] == dd.version


def test_failed_icmp_probe_rolls_back_naming_it(agent, policy):
    # ping refuses the broadcast address without -b: a real ping that fails, and no packet
    # leaves this host
    dd = _deploy(agent, policy, [{"type": "icmp", "host": "255.255.255.255", "timeout": 1}])
    _rolled_back_naming(dd, "icmp 255.255.255.255")


def test_failed_http_probe_rolls_back_naming_it(agent, policy, web):
    url = f"{web}/health"
    dd = _deploy(agent, policy, [{"type": "http", "url": url, "expect_status": 200}])
    _rolled_back_naming(dd, f"http {url} 200")


def test_failed_https_probe_rolls_back_naming_it(agent, policy):
    # the agent's own HTTPS port answers an unsigned GET with 401: expecting 200 fails
    url = f"https://127.0.0.1:{agent.port}/v1/status"
    dd = _deploy(agent, policy, [{"type": "http", "url": url, "expect_status": 200}])
    _rolled_back_naming(dd, f"http {url} 200")


def test_https_probe_passes_on_the_status_it_expects(agent, policy):
    url = f"https://127.0.0.1:{agent.port}/v1/status"
    dd = _deploy(agent, policy, [{"type": "http", "url": url, "expect_status": 401}])
    assert dd.state == "confirmed", dd.error


def test_group_probes_apply_to_devices_without_their_own(agent, policy):
    _, group = policy
    closed = free_port()
    group.probes = [{"type": "tcp", "host": "127.0.0.1", "port": closed, "timeout": 1}]
    group.save()
    device = make_device("web-1", group=group, agent=agent)
    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=10)
    run_all(deployment)
    _rolled_back_naming(deployment.device_deployments.get(), f"tcp 127.0.0.1:{closed}")


def test_deployment_override_replaces_the_devices_probes(agent, policy, listening):
    closed = free_port()
    failing = [{"type": "tcp", "host": "127.0.0.1", "port": closed, "timeout": 1}]
    passing = [{"type": "tcp", "host": "127.0.0.1", "port": listening, "timeout": 1}]
    dd = _deploy(agent, policy, failing, probes=passing)
    assert dd.state == "confirmed", dd.error
    assert dd.deployment.probes == passing


def test_deployment_override_of_no_probes(agent, policy):
    failing = [{"type": "tcp", "host": "127.0.0.1", "port": free_port(), "timeout": 1}]
    dd = _deploy(agent, policy, failing, probes=[])
    assert dd.state == "confirmed", dd.error


def test_the_console_waits_for_slow_probes(agent, web):
    """The apply's read timeout grows by the probes' worst case: a probe that takes longer
    than the console's usual read timeout is not taken for an unreachable agent."""
    device = make_device("web-1", agent=agent)
    client = AgentClient.for_device(device, timeout=(3.05, 1.0))
    started = time.monotonic()
    answer = client.apply(
        bundle=make_bundle(),
        version=1,
        deployment="t",
        confirm_timeout=0,
        probes=[{"type": "http", "url": f"{web}/slow", "timeout": 3}],
    )
    assert answer["result"] == "applied" and time.monotonic() - started >= 1.5
