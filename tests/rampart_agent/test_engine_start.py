"""Engine.start: an interrupted or unconfirmed apply undone, the confirmed bundle restored."""

from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.engine import Engine
from rampart_agent.sample import set_name
from rampart_agent.state import JOURNAL_FILE, StateDir
from tests.rampart_agent.engine_env import FOREIGN, bundle


def test_restart_with_journal_repairs_to_confirmed(env, tmp_path):
    engine, dp, clock, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    # simulate a crash after v4 of version 2 was applied: journal left, v6 untouched
    dp.fail_on = lambda fam, payload: "killed" if fam == "v6" else None
    engine.state.write_json(JOURNAL_FILE, {"phase": "applying", "from": "x", "to": "y"})
    dp.tables["v4"]["filter"]["RPT-INPUT"] = ["-j DROP"]
    dp.tables["v4"]["filter"]["RPT-HALF"] = ["-j DROP"]
    dp.fail_on = None
    again = Engine(StateDir(tmp_path), dp, clock=clock)
    res = again.start()
    assert res["full"] and res["reason"]
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]
    assert "RPT-HALF" not in dp.tables["v4"]["filter"]
    assert dp.tables["v4"]["filter"]["INPUT"] == [
        "-m comment --comment rpt:jump -j RPT-INPUT",
        FOREIGN,
    ]
    assert not again.status()["drift"]["drifted"]


def test_restart_with_pending_rolls_back(env, tmp_path):
    engine, dp, clock, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    engine.apply({"bundle": bundle(["-j DROP"]), "version": 2, "confirm_timeout": 300})
    engine.shutdown()
    again = Engine(StateDir(tmp_path), dp, clock=clock)
    assert again.start()["reason"] == "agent restarted before the confirm"
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]


def test_restart_after_reboot_reapplies_confirmed(env, tmp_path):
    engine, dp, clock, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    fresh = RecordingDataplane()  # the kernel after a reboot: empty
    again = Engine(StateDir(tmp_path), fresh, clock=clock)
    assert again.start()["full"] is True
    assert fresh.tables["v4"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]
    # and a restart with a matching kernel changes nothing (counters are kept)
    n = len(fresh.payloads)
    assert Engine(StateDir(tmp_path), fresh, clock=clock).start()["full"] is False
    assert len(fresh.payloads) == n


def test_start_destroys_sets_a_killed_apply_left_behind(env, tmp_path):
    """Applies trust the records (no set listing); the start lists the sets and removes
    what a kill left: the previous bundle's set (killed before its destroy) and a
    half-filled one (killed mid-fill, no rule refers to it)."""
    engine, dp, clock, _ = env
    s1, s2 = set_name(4, ["198.18.1.0/24"]), set_name(4, ["198.18.2.0/24"])
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
            "confirm_timeout": 0,
        }
    )
    dp.ipset_restore(f"create {s1} hash:net family inet\nadd {s1} 198.18.1.0/24\n")
    dp.ipset_restore("create rpt-4-0123456789ab hash:net family inet\n")
    again = Engine(StateDir(tmp_path), dp, clock=clock)
    assert again.start()["full"] is False  # the chains were right: no rewrite needed
    assert set(dp.sets) == {s2}
    assert not again.status()["drift"]["drifted"]
