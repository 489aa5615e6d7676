"""The facts path of the native nftables dataplane, end to end on a real kernel: an agent on
`auto` in an rpt_ namespace of this (nftables) host enrolls with `backend: nft-native`,
the console compiles it bundles carrying the `nft` script, and the push loads them into
`table inet rampart`. A push compiled from stale iptables facts is refused by the agent in
one line, nothing applied; the next status poll corrects the facts."""

from __future__ import annotations

import threading

import pytest

from agents import services
from agents.models import DeviceDeployment
from rampart_agent import protocol
from rampart_agent.dataplane import NftDataplane, open_dataplane
from rampart_agent.engine import Engine, gather_facts
from rampart_agent.runner import Runner
from rampart_agent.server import AgentHTTPServer
from rampart_agent.state import StateDir
from rules.models import Device
from tests.agents.helpers import run_all
from tests.support.deploy import LocalAgent, make_device
from tests.support.netns import Netns, namespace, needs_netns

pytestmark = [
    *needs_netns,
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]
ENROLL = "/api/v1/agents/enroll/"


def native_agent(ns: Netns, state_dir, console_key: str) -> LocalAgent:
    """The agent's HTTPS server in this process (loopback), its dataplane chosen by `auto`
    and working inside `ns`."""
    runner = Runner(prefix=["ip", "netns", "exec", ns.name])
    dp = open_dataplane("auto", runner)
    state = StateDir(state_dir)
    state.ensure_identity("native-agent")
    state.set_console_key(console_key)
    engine = Engine(state, dp)
    engine.start()
    server = AgentHTTPServer(("127.0.0.1", 0), engine, state)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return LocalAgent(server, engine, state, dp, thread)  # type: ignore[arg-type]


def our_table(ns: Netns) -> str:
    res = ns.run("nft", "list", "table", "inet", "rampart", check=False)
    return res.stdout if res.returncode == 0 else ""


def test_native_agent_enrolls_and_gets_native_bundles(
    client, deploy_console, policy, tmp_path, monkeypatch
):
    monkeypatch.delenv("RAMPART_AGENT_BACKEND", raising=False)
    _, group = policy
    with namespace("nfc") as ns:
        if "nf_tables" not in ns.run("iptables", "-V").stdout:
            pytest.skip("iptables here is the legacy variant: auto is not native")
        agent = native_agent(ns, tmp_path / "agent", deploy_console)
        try:
            assert isinstance(agent.dp, NftDataplane)
            device = make_device("web-1", group=group)
            token = services.enrollment_token_create(device=device).token
            resp = client.post(
                ENROLL,
                {
                    "token": token,
                    "public_key": protocol.public_key_b64(agent.state.ensure_identity()),
                    "cert_fingerprint": agent.state.cert_fingerprint(),
                    "listen_port": agent.port,
                    "facts": gather_facts(agent.dp),
                },
                content_type="application/json",
            )
            assert resp.status_code == 201, resp.content
            device.refresh_from_db()
            assert device.facts["backend"] == "nft-native"

            deployment = services.deploy_create(devices=[device.pk], confirm_timeout=0)
            assert run_all(deployment) == ["confirmed"]
            dd = DeviceDeployment.objects.get(deployment=deployment)
            stored = agent.engine.store.load(dd.bundle_hash)
            assert stored.nft and stored.nft.startswith("table inet rampart\n")
            loaded = our_table(ns)
            assert "tcp dport 443" in loaded and "rpt:" in loaded
            assert services.status_poll(device_id=device.pk)["drifted"] is False

            # the console's facts are stale (say, from before the host moved to nftables):
            # it compiles an iptables bundle, which the agent refuses, applying nothing
            Device.objects.filter(pk=device.pk).update(facts={**device.facts, "backend": "nft"})
            stale = services.deploy_create(devices=[device.pk], confirm_timeout=0)
            assert run_all(stale) == ["failed"]
            failed = DeviceDeployment.objects.get(deployment=stale)
            assert "has no nft script" in failed.error, failed.error
            assert our_table(ns) == loaded
            # the next status poll brings the agent's own facts back: native again
            services.status_poll(device_id=device.pk)
            device.refresh_from_db()
            assert device.facts["backend"] == "nft-native"
            again = services.deploy_create(devices=[device.pk], confirm_timeout=0)
            assert run_all(again) == ["unchanged"]  # the native bundle it holds, again
            assert DeviceDeployment.objects.get(deployment=again).bundle_hash == dd.bundle_hash
        finally:
            agent.stop()
