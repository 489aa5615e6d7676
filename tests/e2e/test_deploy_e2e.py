"""Deploy from the browser to a real agent in a network namespace, and see it confirmed.

The console's Celery worker runs as a real subprocess (`celery -A console worker -P solo`)
inside the client namespace of an `rpt_ui*` host pair, so it reaches the agent over the
veth exactly as a console host reaches a firewall; the live server (root namespace) only
enqueues. Worker and live server share the file-backed test database and a filesystem
broker in a temporary directory, never the developer's var/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.netns import host_pair, needs_netns

from .conftest import shot

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    *needs_netns,
    pytest.mark.django_db(transaction=True),
]
ROOT = Path(__file__).resolve().parents[2]


def _start_worker(ns, tmp: Path, db_path: str) -> subprocess.Popen:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAMPART_", "CELERY_", "REDIS_URL", "DATABASE_URL"))
    }
    env.update(
        DATABASE_URL=f"sqlite:///{db_path}",
        CELERY_BROKER_URL="filesystem://",
        RAMPART_VAR_DIR=str(tmp),
        RAMPART_CONSOLE_KEY_FILE=str(tmp / "console-key.pem"),
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="console.settings",
        PYTHONPATH=str(ROOT),
    )
    log = (tmp / "worker.log").open("ab")
    proc = ns.popen(
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "console",
        "worker",
        "-P",
        "solo",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"rpt-ui-{os.getpid()}@%h",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    deadline = time.monotonic() + 60
    while b" ready." not in (tmp / "worker.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                "celery worker did not start:\n" + (tmp / "worker.log").read_text()[-3000:]
            )
        time.sleep(0.2)
    return proc


def _point_celery_at(tmp: Path) -> None:
    """This process enqueues into the same temporary filesystem broker as the worker."""
    from console.celery import app

    out = tmp / "broker" / "out"
    for sub in ("out", "processed", "control"):
        (tmp / "broker" / sub).mkdir(parents=True, exist_ok=True)
    # an earlier test of this process may have sent a task: its pooled connection and
    # producers still point at the old broker folders, so drop them first
    app.close()
    app.amqp._producer_pool = None
    app.conf.broker_url = "filesystem://"
    app.conf.broker_transport_options = {
        "data_folder_in": str(out),
        "data_folder_out": str(out),
        "processed_folder": str(tmp / "broker" / "processed"),
        "store_processed": False,
        "control_folder": str(tmp / "broker" / "control"),
    }


def test_deploy_to_namespace_agent_and_find_it_in_the_audit_log(page, login, make_user, tmp_path):
    from django.db import connection

    from rampart_agent import protocol
    from rampart_agent.state import StateDir
    from rules import services
    from rules.models import Device, DeviceRuleSet, RuleSet

    with host_pair("uid") as (client, server):
        # The agent, trusting a console key made for this test.
        key = protocol.generate_private_key()
        (tmp_path / "console-key.pem").write_bytes(protocol.private_key_to_pem(key))
        state = StateDir(tmp_path / "agent")
        agent_key = protocol.public_key_b64(state.ensure_identity())
        state.set_console_key(protocol.public_key_b64(key))
        agent = server.popen(
            "env",
            f"PYTHONPATH={ROOT}",
            sys.executable,
            "-m",
            "rampart_agent.cli",
            "serve",
            "--state-dir",
            str(state.path),
            "--dataplane",
            "nft",
            "--listen",
            f"{server.addr4}:8745",
            stdout=subprocess.PIPE,
            text=True,
        )
        assert agent.stdout.readline().startswith("ready")
        listener = server.listen(tcp=[80, 81])

        # Its device and policy: the client may reach tcp/80, nothing else new gets in.
        ruleset = services.object_save(RuleSet(name="ui-web"))
        services.rule_create(
            ruleset=ruleset,
            data={
                "action": "accept",
                "protocol": "tcp",
                "dports": ["80"],
                "sources": [client.addr4],
                "comment": "web from client",
            },
        )
        device = Device.objects.create(
            name="ui-agent",
            address=server.addr4,
            agent_port=8745,
            agent_public_key=agent_key,
            agent_cert_fingerprint=state.cert_fingerprint(),
            management_sources=[client.addr4],
        )
        DeviceRuleSet.objects.create(device=device, ruleset=ruleset)
        assert client.tcp_ok(server.addr4, 81)  # open before the deploy

        _point_celery_at(tmp_path)
        worker = _start_worker(client, tmp_path, connection.settings_dict["NAME"])
        try:
            login(make_user("dora", "operator"))
            page.goto(f"/devices/{device.pk}/")
            page.get_by_test_id("deploy-button").click()
            progress = page.get_by_test_id("deployment-progress")
            expect(progress).to_be_visible()
            expect(progress.get_by_test_id("dd-state")).to_contain_text("confirmed", timeout=90_000)
            expect(progress).to_have_attribute("data-status", "succeeded", timeout=30_000)
            expect(page.get_by_test_id("applied")).to_contain_text(
                "v1"
            )  # refreshed when it finished
            device.refresh_from_db()
            assert device.applied_version > 0 and device.applied_hash
            # The kernel in the namespace now enforces it.
            assert client.tcp_ok(server.addr4, 80)
            assert not client.tcp_ok(server.addr4, 81)
            # The fleet poll (a Celery task, run by the same worker) brings facts and counters.
            from agents.tasks import poll_device

            poll_device.delay(device.pk)
            deadline = time.monotonic() + 60
            while not Device.objects.filter(pk=device.pk, status="online").exists():
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
                time.sleep(0.5)
            page.reload()
            expect(page.locator("h1 + .badge")).to_contain_text("online")
            expect(page.get_by_test_id("facts")).not_to_contain_text("not reported")
            counters = page.get_by_test_id("counters")
            expect(counters).to_contain_text("ui-web #1")
            expect(counters).to_contain_text("web from client")
            shot(page, "device")
        finally:
            worker.terminate()
            worker.wait(timeout=20)

        page.get_by_role("link", name="Deployments").click()
        page.get_by_test_id("deployments-table").get_by_role("link", name="#").first.click()
        expect(page.get_by_test_id("deployment-progress")).to_contain_text("ui-agent")
        shot(page, "deployment")
        page.get_by_role("link", name="Audit").click()
        page.get_by_label("Action").select_option("deploy_state")
        page.get_by_role("button", name="Filter").click()
        table = page.get_by_test_id("audit-table")
        expect(table).to_contain_text("deploy_state")
        expect(table).to_contain_text("confirmed")
        expect(table.locator("tr", has_text="confirmed").first).to_contain_text("ui-agent")
        shot(page, "audit")

        # The tracer agrees with the kernel: 80 is accepted by the rule, 81 falls to the default.
        page.get_by_role("link", name="Tracer").click()
        page.get_by_label("Device", exact=True).select_option(label="ui-agent")
        page.get_by_label("Source", exact=True).fill(client.addr4)
        page.get_by_label("Destination", exact=True).fill(server.addr4)
        page.get_by_label("Dest. port").fill("80")
        page.get_by_role("button", name="Trace").click()
        result = page.get_by_test_id("trace-result")
        expect(result).to_contain_text("accept")
        expect(result).to_contain_text("rule #1")
        shot(page, "tracer-result")
        page.get_by_label("Dest. port").fill("81")
        page.get_by_role("button", name="Trace").click()
        expect(page.get_by_test_id("trace-result").locator(".action")).to_have_text("drop")
        listener.kill()
        agent.terminate()
