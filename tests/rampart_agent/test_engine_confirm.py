"""Commit-confirmed: the deadline, the confirm, probes, and a confirm after a reboot."""

import shutil

import pytest

from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.engine import AgentError, Engine
from rampart_agent.sample import set_name
from rampart_agent.state import StateDir
from tests.rampart_agent.engine_env import bundle


def test_no_confirm_rolls_back_at_deadline(env):
    engine, dp, clock, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    res = engine.apply({"bundle": bundle(["-j DROP"]), "version": 2, "confirm_timeout": 30})
    assert res["confirm_deadline"] == clock.t + 30
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j DROP"]
    clock.t += 10
    assert engine.check_deadline() is None
    clock.t += 21
    assert engine.check_deadline()["result"] == "rolled_back"
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]
    st = engine.status()
    assert st["applied"]["version"] == 1 and st["pending"] is None
    assert st["last_rollback"]["version"] == 2
    with pytest.raises(AgentError) as exc:
        engine.confirm(2)
    assert exc.value.status == 409 and exc.value.body["result"] == "rolled_back"


def test_confirm_keeps_new_and_destroys_old_sets(env):
    engine, dp, _, _ = env
    s1 = set_name(4, ["198.18.1.0/24"])
    s2 = set_name(4, ["198.18.2.0/24"])
    r = "-m set --match-set {} src -j ACCEPT"
    engine.apply(
        {
            "bundle": bundle([r.format(s1)], v6=False, sets={s1: ["198.18.1.0/24"]}),
            "version": 1,
            "confirm_timeout": 0,
        }
    )
    engine.apply(
        {
            "bundle": bundle([r.format(s2)], v6=False, sets={s2: ["198.18.2.0/24"]}),
            "version": 2,
            "confirm_timeout": 30,
        }
    )
    assert set(dp.sets) == {s1, s2}  # the previous set is kept for a rollback
    engine.confirm(2)
    assert set(dp.sets) == {s2}
    assert engine.status()["applied"]["confirmed"] is True


def test_failing_probe_rolls_back_at_once(env):
    engine, dp, _, probes = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    probes["ok"] = False
    with pytest.raises(AgentError) as exc:
        engine.apply(
            {
                "bundle": bundle(["-j DROP"]),
                "version": 2,
                "confirm_timeout": 30,
                "probes": [{"type": "tcp", "host": "198.18.0.1", "port": 443}],
            }
        )
    assert exc.value.body["result"] == "rolled_back"
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]


def test_a_version_pending_at_a_reboot_is_reported_rolled_back(env, tmp_path):
    """A reboot empties the runtime directory with the kernel: the start applies the
    confirmed bundle, and the console's late confirm of the lost version hears
    `rolled_back`, not a version the agent never heard of."""
    engine, dp, clock, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    engine.apply({"bundle": bundle(["-j DROP"]), "version": 2, "confirm_timeout": 300})
    engine.shutdown()
    shutil.rmtree(engine.state.run_path)  # the tmpfs after a reboot
    fresh = RecordingDataplane()  # the kernel after a reboot
    again = Engine(StateDir(tmp_path), fresh, clock=clock)
    again.start()
    assert fresh.tables["v4"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]
    with pytest.raises(AgentError) as exc:
        again.confirm(2)
    assert exc.value.body["result"] == "rolled_back"
    again.shutdown()


def test_confirm_on_a_connection_opened_before_the_apply_is_refused(env):
    engine, dp, clock, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    opened_before = clock.t
    clock.t += 1
    engine.apply({"bundle": bundle(["-j DROP"]), "version": 2, "confirm_timeout": 30})
    for opened_at in (opened_before, clock.t):  # before it, or while it ran
        with pytest.raises(AgentError) as exc:
            engine.confirm(2, opened_at=opened_at)
        assert exc.value.status == 409 and exc.value.body["result"] == "stale_connection"
        assert exc.value.body["error"] == (
            "confirm must arrive on a connection opened after the apply; this one was opened before"
        )
    assert engine.status()["pending"]["version"] == 2  # the deadline still stands
    clock.t += 0.5
    assert engine.confirm(2, opened_at=clock.t)["result"] == "confirmed"
    assert engine.confirm(2, opened_at=opened_before)["result"] == "confirmed"  # idempotent
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j DROP"]
