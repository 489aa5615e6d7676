"""The deploy pipeline with real parts: gunicorn serving the API, a real `celery worker`
process (with beat) on Redis or RabbitMQ, real agents (`rampart-agent serve`) in rpt_
network namespaces or on loopback, and one SQLite file all of them open.

API call → rules live in the agent's namespace → real packets allowed and blocked; an agent
that is down is retried and then failed with the reason; a worker killed with -9 mid-push
has its task redelivered and the deployment finishes; a hand-made change in the namespace
is reported as drift within a poll and repaired.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from agents.models import Deployment, DeviceDeployment
from core.audit.models import AuditEntry
from rules.models import Device, DeviceMembership
from tests.support.deploy import (
    Stack,
    console_stack,
    make_policy,
    migrate_file_db,
    serve_agent_cmd,
    stop_process,
    use_database,
    wait_for,
    wait_ready,
)
from tests.support.netns import host_pair, sh

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

REDIS_URL = os.environ.get("RAMPART_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
AMQP_URL = os.environ.get("RAMPART_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
IS_ROOT = os.geteuid() == 0 and bool(sh("sh", "-c", "command -v ip", check=False).stdout)


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Net:
    client: object
    server: object
    console_addr: str
    agent_addr: str


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory) -> tuple[str, str]:
    """One migrated database and one console key for every console of this module."""
    tmp = tmp_path_factory.mktemp("dpdb")
    return migrate_file_db(tmp / "console.sqlite3"), str(tmp / "console-key.pem")


@pytest.fixture(scope="module")
def redis_stack(
    tmp_path_factory, django_db_blocker, shared_db
) -> Iterator[tuple[Stack, Net | None]]:
    if not reachable(REDIS_URL):
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    tmp = tmp_path_factory.mktemp("dpredis")
    with ExitStack() as stack, django_db_blocker.unblock():
        net = None
        if IS_ROOT:
            client, server = stack.enter_context(host_pair("dpe"))
            # a link from the root namespace (where the console runs) to the agent's namespace
            n = os.getpid() % 250 + 1
            root_if, ns_if = f"rpdr{n}", f"rpds{n}"
            sh(
                "ip",
                "link",
                "add",
                root_if,
                "type",
                "veth",
                "peer",
                "name",
                ns_if,
                "netns",
                server.name,
            )
            stack.callback(sh, "ip", "link", "delete", root_if, check=False)
            console_addr, agent_addr = f"198.19.{n}.1", f"198.19.{n}.2"
            sh("ip", "addr", "add", f"{console_addr}/30", "dev", root_if)
            sh("ip", "link", "set", root_if, "up")
            server.run("ip", "addr", "add", f"{agent_addr}/30", "dev", ns_if)
            server.run("ip", "link", "set", ns_if, "up")
            net = Net(client, server, console_addr, agent_addr)
        db_url, key_file = shared_db
        port = free_port()
        binds = [f"127.0.0.1:{port}"] + ([f"{net.console_addr}:{port}"] if net else [])
        console = stack.enter_context(
            console_stack(tmp, db_url, REDIS_URL, binds, RAMPART_CONSOLE_KEY_FILE=key_file)
        )
        yield console, net


@pytest.fixture
def db_of(redis_stack, django_db_blocker):
    console, _ = redis_stack
    with django_db_blocker.unblock(), use_database(console.db_url):
        yield console


def ns_device(name: str, net: Net, **fields):
    _, group = make_policy(
        name, ports=(80,), sources=(net.client.addr4,)
    )  # only the client, port 80
    device = Device.objects.create(
        name=name,
        address=net.agent_addr,
        agent_port=8745,
        management_sources=[net.console_addr],
        **fields,
    )
    DeviceMembership.objects.create(device=device, group=group)
    return device


@pytest.fixture(scope="module")
def ns_agent(redis_stack, django_db_blocker, tmp_path_factory):
    """`rampart-agent serve` (nft) in the server namespace, enrolled through the API."""
    console, net = redis_stack
    if net is None:
        pytest.skip("needs root and iproute2 for network namespaces (CI runs as root)")
    state = tmp_path_factory.mktemp("dpagent")
    with django_db_blocker.unblock(), use_database(console.db_url):
        device = ns_device("dp-web", net)
    proc = net.server.popen(
        *serve_agent_cmd(state, f"{net.agent_addr}:8745", "nft", confirm_timeout=10),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    wait_ready(proc)
    console.enroll(
        device.pk,
        state,
        8745,
        f"http://{net.console_addr}{console.api_url[console.api_url.rindex(':') :]}",
        ns=net.server,
    )
    net.server.listen(tcp=[80, 81])
    return device


@pytest.mark.netns
def test_api_call_puts_rules_in_the_kernel_and_packets_obey(redis_stack, ns_agent):
    console, net = redis_stack
    client, server = net.client, net.server
    assert client.probe([{"proto": "tcp", "host": server.addr4, "port": p} for p in (80, 81)]) == [
        True,
        True,
    ]

    deployment = console.deploy(devices=[ns_agent.pk], confirm_timeout=10)
    body = console.wait_done(deployment)
    dd = body["devices"][0]
    assert body["status"] == "succeeded" and dd["state"] == "confirmed", body
    assert [t["state"] for t in dd["transitions"]] == [
        "queued",
        "compiling",
        "pushing",
        "applied",
        "confirmed",
    ]
    assert dd["agent_response"]["result"] == "applied" and dd["agent_response"]["apply_ms"] > 0

    assert client.probe([{"proto": "tcp", "host": server.addr4, "port": p} for p in (80, 81)]) == [
        True,
        False,
    ]
    saved = server.run("iptables-nft-save").stdout
    assert "RPT-INPUT" in saved and "rpt:sys:mgmt" in saved
    # the console still reaches the agent through the management rule
    poll = console.deploy(devices=[ns_agent.pk])
    assert console.wait_done(poll)["devices"][0]["state"] == "unchanged"


@pytest.mark.netns
def test_hand_made_change_is_drift_and_gets_repaired(redis_stack, ns_agent, django_db_blocker):
    console, net = redis_stack
    with django_db_blocker.unblock(), use_database(console.db_url):
        Device.objects.filter(pk=ns_agent.pk).update(auto_repair=True)
    console.wait_done(console.deploy(devices=[ns_agent.pk]))
    assert net.client.tcp_ok(net.server.addr4, 81) is False

    net.server.run(
        "iptables-nft", "-I", "RPT-INPUT", "1", "-p", "tcp", "--dport", "81", "-j", "ACCEPT"
    )
    assert net.client.tcp_ok(net.server.addr4, 81) is True
    t0 = time.monotonic()
    with django_db_blocker.unblock(), use_database(console.db_url):
        # the drifted flag may be up for only a moment (the repair is quick): the audit log keeps it
        entry = wait_for(
            lambda: AuditEntry.objects.filter(
                action="drift_detected", object_id=str(ns_agent.pk)
            ).first(),
            10,
            0.2,
            "drift to be reported",
        )
        seen = time.monotonic() - t0
        assert "no rpt comment" in entry.after["diff"], entry.after
        wait_for(
            lambda: AuditEntry.objects.filter(
                action="drift_repaired", object_id=str(ns_agent.pk)
            ).exists(),
            10,
            0.2,
            "a repair deployment",
        )
        repair = Deployment.objects.filter(trigger="repair").order_by("-id").first()
        assert repair is not None and repair.device_deployments.get().device_id == ns_agent.pk
        wait_for(
            lambda: Deployment.objects.get(pk=repair.pk).status == "succeeded",
            20,
            0.3,
            "the repair",
        )
        assert not Device.objects.get(pk=ns_agent.pk).drifted
    assert seen < 2 * 2 + 3  # within one poll interval (2 s) plus the poll itself
    assert net.client.tcp_ok(net.server.addr4, 81) is False
    assert net.client.tcp_ok(net.server.addr4, 80) is True


def test_agent_down_is_retried_then_failed_with_reason(db_of):
    console = db_of
    device = Device.objects.create(
        name="dp-down",
        address="127.0.0.1",
        agent_port=free_port(),
        agent_public_key="0N7Xa5zTlqJ1jisA31Ax/mhwSi33YKaiIKzytXJGLqE=",
        agent_cert_fingerprint="ab" * 32,
    )
    make_policy("dp-down-rs")
    body = console.wait_done(console.deploy(devices=[device.pk]), timeout=40)
    dd = body["devices"][0]
    assert dd["state"] == "failed" and dd["attempts"] == 3, dd
    assert "agent unreachable after 3 attempts" in dd["error"] and "ConnectionError" in dd["error"]
    assert sum("retrying" in t.get("note", "") for t in dd["transitions"]) == 2


def test_worker_killed_mid_push_is_redelivered_and_finishes(db_of, tmp_path):
    console = db_of
    port = free_port()
    state = tmp_path / "agent"
    agent = subprocess.Popen(
        serve_agent_cmd(state, f"127.0.0.1:{port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        wait_ready(agent)
        _, group = make_policy("dp-kill")
        device = Device.objects.create(name="dp-kill", address="127.0.0.1", agent_port=port)
        device.groups.add(group)
        console.enroll(device.pk, state, port, console.api_url)
        os.kill(agent.pid, signal.SIGSTOP)  # the push hangs on the wire...
        deployment = console.deploy(devices=[device.pk], confirm_timeout=60)
        wait_for(
            lambda: DeviceDeployment.objects.filter(
                deployment_id=deployment, state="pushing"
            ).exists(),
            20,
            0.1,
            "the push to start",
        )
        time.sleep(0.5)
        console.worker.kill9()  # ...and the worker dies mid-task
        os.kill(agent.pid, signal.SIGCONT)
        console.start_worker()
        body = console.wait_done(deployment, timeout=60)
    finally:
        os.kill(agent.pid, signal.SIGCONT)
        stop_process(agent)
    dd = body["devices"][0]
    assert dd["state"] == "confirmed", dd
    assert sum(t["state"] == "compiling" for t in dd["transitions"]) >= 2  # it ran again
    assert (
        DeviceDeployment.objects.filter(state__in=["compiling", "pushing", "applied"]).count() == 0
    )


@pytest.mark.parametrize("broker", ["amqp", "filesystem"])
def test_other_brokers_end_to_end(broker, tmp_path, django_db_blocker, shared_db):
    """RabbitMQ (CELERY_BROKER_URL=amqp://…) and the embedded filesystem broker (no REDIS_URL)."""
    url = AMQP_URL if broker == "amqp" else "filesystem://"
    if broker == "amqp" and not reachable(AMQP_URL):
        pytest.skip(f"RabbitMQ not reachable at {AMQP_URL.split('@')[-1]}")
    db_url, key_file = shared_db
    name = f"dp-{broker}"
    with (
        django_db_blocker.unblock(),
        console_stack(
            tmp_path,
            db_url,
            url,
            [f"127.0.0.1:{free_port()}"],
            beat=False,
            RAMPART_CONSOLE_KEY_FILE=key_file,
        ) as console,
    ):
        agent_port = free_port()
        state = tmp_path / "agent"
        agent = subprocess.Popen(
            serve_agent_cmd(state, f"127.0.0.1:{agent_port}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        console.procs.append(agent)
        wait_ready(agent)
        with use_database(db_url):
            _, group = make_policy(name)
            device = Device.objects.create(name=name, address="127.0.0.1", agent_port=agent_port)
            device.groups.add(group)
        console.enroll(device.pk, state, agent_port, console.api_url)
        body = console.wait_done(console.deploy(devices=[device.pk], confirm_timeout=10))
        banner = console.worker.log.read_text()
    assert ("amqp://guest:**@127.0.0.1:5672" if broker == "amqp" else "filesystem://") in banner
    assert body["status"] == "succeeded" and body["devices"][0]["state"] == "confirmed", body
