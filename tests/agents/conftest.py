"""Fixtures of the deploy service tests: a console key, a policy, an in-process agent."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from agents.client import console_public_key_b64
from tests.agents.helpers import free_port
from tests.support.deploy import local_agent, make_policy


@pytest.fixture
def deploy_console(settings, tmp_path) -> str:
    """A console key of this test only, and three push attempts; its public key."""
    settings.RAMPART = {
        **settings.RAMPART,
        "CONSOLE_KEY_FILE": str(tmp_path / "console-key.pem"),
        "DEPLOY_MAX_ATTEMPTS": 3,
    }
    return console_public_key_b64()


@pytest.fixture
def agent(tmp_path, deploy_console):
    """The agent's own HTTPS server and engine with the recording dataplane, in threads."""
    with local_agent(tmp_path / "agent", deploy_console) as a:
        yield a


@pytest.fixture
def agents(tmp_path, deploy_console):
    """Three agents of their own (recording dataplane), in threads of this process, on
    three loopback addresses and one port, as hosts of a fleet listen."""
    port = free_port()
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                local_agent(
                    tmp_path / f"agent-{i}", deploy_console, host=f"127.1.0.{i + 1}", port=port
                )
            )
            for i in range(3)
        ]


@pytest.fixture
def policy():
    """Rule set `web` (tcp 80 and 443 from 198.18.0.0/15) and the group `web-servers`."""
    return make_policy("web", ports=(80, 443))
