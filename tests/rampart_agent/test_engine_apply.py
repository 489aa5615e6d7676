"""Engine.apply over the recording dataplane: applied, unchanged, refused."""

import pytest

from rampart_agent.engine import AgentError
from tests.rampart_agent.engine_env import FOREIGN, bundle


def test_apply_then_unchanged_and_foreign_rules_survive(env):
    engine, dp, _, _ = env
    b = bundle()
    res = engine.apply({"bundle": b, "version": 1, "confirm_timeout": 0})
    assert res["result"] == "applied"
    f = dp.tables["v4"]["filter"]
    assert f["INPUT"] == ["-m comment --comment rpt:jump -j RPT-INPUT", FOREIGN]
    assert f["RPT-INPUT"] == ["-j ACCEPT"] and f["DOCKER-USER"] == ["-j RETURN"]
    assert dp.tables["v6"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]
    n = len(dp.payloads)
    assert engine.apply({"bundle": b, "version": 2})["result"] == "unchanged"
    assert len(dp.payloads) == n
    st = engine.status()
    assert st["applied"]["version"] == 2 and not st["drift"]["drifted"]


def test_replay_and_downgrade_refused(env):
    engine, dp, _, _ = env
    engine.apply({"bundle": bundle(), "version": 5, "confirm_timeout": 0})
    before = [list(p) for p in dp.payloads]
    for v in (5, 4):
        with pytest.raises(AgentError) as exc:
            engine.apply({"bundle": bundle(["-j DROP"]), "version": v, "confirm_timeout": 0})
        assert exc.value.status == 409
    assert [list(p) for p in dp.payloads] == before


def test_tampered_bundle_hash_refused(env):
    engine, _, _, _ = env
    b = bundle()
    b["iptables_v4"] = b["iptables_v4"].replace("ACCEPT", "DROP")
    with pytest.raises(AgentError) as exc:
        engine.apply({"bundle": b, "version": 1})
    assert exc.value.status == 400 and "hash" in str(exc.value)


def test_local_apply_accepts_bare_bundle(env):
    engine, dp, _, _ = env
    res = engine.apply(bundle(), local=True)
    assert res["result"] == "applied" and res["version"] == 1
    assert engine.status()["applied"]["confirmed"] is True
