"""The `env` fixture: an engine over the recording dataplane, started on a host whose
tables already hold someone else's rules."""

import pytest

from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.engine import Engine
from rampart_agent.state import StateDir
from tests.rampart_agent.engine_env import FOREIGN, FakeClock


@pytest.fixture
def env(tmp_path):
    dp = RecordingDataplane()
    # someone else's rules (Docker-like chain, an admin's rule) are there first
    dp.tables["v4"]["filter"] = {
        "INPUT": [FOREIGN],
        "FORWARD": ["-j DOCKER-USER"],
        "OUTPUT": [],
        "DOCKER-USER": ["-j RETURN"],
    }
    clock = FakeClock()
    probes = {"ok": True}
    engine = Engine(StateDir(tmp_path), dp, clock=clock, probe_runner=lambda p: probes["ok"])
    engine.start()
    yield engine, dp, clock, probes
    engine.shutdown()
