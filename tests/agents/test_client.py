"""The push client against a real agent server: pinning, request signing, answer checking."""

from __future__ import annotations

import pytest

from agents import client as client_module
from agents.client import (
    READ_TIMEOUT,
    AgentClient,
    AgentIdentityError,
    AgentRefused,
    AgentUnreachable,
    reset_sessions,
)
from rampart_agent import protocol
from rampart_agent.sample import make_bundle
from tests.agents.helpers import free_port
from tests.support.deploy import local_agent

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture
def console():
    return protocol.generate_private_key()


@pytest.fixture
def agent(tmp_path, console):
    reset_sessions()
    with local_agent(tmp_path / "agent", protocol.public_key_b64(console)) as a:
        yield a
    reset_sessions()


def client_for(agent, console, **overrides) -> AgentClient:
    params = {
        "address": "127.0.0.1",
        "port": agent.port,
        "public_key_b64": agent.public_key,
        "cert_fingerprint": agent.fingerprint,
        "key": console,
        **overrides,
    }
    return AgentClient(**params)


def test_signed_status_apply_confirm_roundtrip(agent, console):
    client = client_for(agent, console)
    assert client.status()["applied"] is None
    spec = {"filter": {"chains": {"RPT-INPUT": ["-j ACCEPT"]}, "jumps": {"INPUT": ["RPT-INPUT"]}}}
    bundle = make_bundle(v4=spec)
    answer = client.apply(bundle=bundle, version=1, deployment="1", confirm_timeout=30)
    assert answer["result"] == "applied" and answer["hash"] == bundle["hash"]
    assert client.confirm(1) == {"result": "confirmed", "version": 1}
    with pytest.raises(AgentRefused) as refused:  # replay of an older version: 409, not retryable
        client.apply(bundle=bundle, version=1, deployment="1", confirm_timeout=0)
    assert refused.value.status == 409 and not refused.value.retryable


def test_no_kept_alive_connection_spans_an_apply(agent, console):
    """Applies ride the kept-alive pool, dropped once answered; status and confirm open
    a connection each (the agent refuses a confirm on one opened before the apply)."""
    client = client_for(agent, console)
    key = (client.base_url, client.fingerprint)
    client.request("GET", protocol.PATH_STATUS)  # a kept-alive connection, opened now
    assert key in client_module._sessions
    spec = {"filter": {"chains": {"RPT-INPUT": ["-j ACCEPT"]}, "jumps": {"INPUT": ["RPT-INPUT"]}}}
    client.apply(bundle=make_bundle(v4=spec), version=1, deployment="1", confirm_timeout=30)
    assert key not in client_module._sessions
    assert client.status()["pending"]["version"] == 1
    assert client.confirm(1) == {"result": "confirmed", "version": 1}
    assert key not in client_module._sessions


def test_read_timeout_outlasts_the_agents_wait_for_the_xtables_lock():
    assert READ_TIMEOUT >= protocol.XTABLES_WAIT_SECONDS + 10


def test_certificate_pin_mismatch_is_an_identity_error_and_nothing_is_sent(agent, console):
    client = client_for(agent, console, cert_fingerprint="00" * 32)
    with pytest.raises(AgentIdentityError, match="pinned fingerprint"):
        client.status()
    with pytest.raises(AgentIdentityError, match="pinned fingerprint"):
        client.confirm(1)
    assert not agent.server.nonces._seen  # no request reached the agent
    spec = {"filter": {"chains": {"RPT-INPUT": ["-j ACCEPT"]}, "jumps": {"INPUT": ["RPT-INPUT"]}}}
    with pytest.raises(AgentIdentityError):
        client.apply(bundle=make_bundle(v4=spec), version=1, deployment="1", confirm_timeout=0)
    assert agent.engine.status()["applied"] is None and agent.dp.payloads == []


def test_answer_signed_by_another_key_is_refused(agent, console):
    impostor = protocol.public_key_b64(protocol.generate_private_key())
    client = client_for(agent, console, public_key_b64=impostor)
    with pytest.raises(AgentIdentityError, match="bad agent response signature"):
        client.status()


def test_wrong_console_key_is_refused_by_the_agent(agent):
    client = client_for(agent, protocol.generate_private_key())
    with pytest.raises(AgentRefused) as refused:
        client.status()
    assert refused.value.status == 401


def test_unreachable_agent_is_retryable(console):
    client = AgentClient(
        address="127.0.0.1",
        port=free_port(),
        public_key_b64=protocol.public_key_b64(console),
        cert_fingerprint="ab" * 32,
        key=console,
    )
    with pytest.raises(AgentUnreachable) as exc:
        client.status()
    assert exc.value.retryable


def test_not_enrolled_device_cannot_get_a_client(console):
    with pytest.raises(AgentIdentityError, match="not enrolled"):
        AgentClient(
            address="127.0.0.1", port=1, public_key_b64="", cert_fingerprint="", key=console
        )
