"""A confirmed record naming a missing bundle: never written that way, healed at start."""

import json
import logging

from rampart_agent.engine import Engine
from rampart_agent.state import StateDir
from tests.rampart_agent.engine_env import bundle


def test_confirm_rewrites_a_bundle_file_removed_behind_the_engines_back(env):
    """The engine's memory of which files exist is not trusted for the durable record
    (another process removed X's file; the console pushes X again)."""
    engine, _, _, _ = env
    x = bundle()
    engine.apply({"bundle": x, "version": 1, "confirm_timeout": 0})
    engine.state.bundle_file(x["hash"]).unlink()
    assert engine.apply({"bundle": x, "version": 2, "confirm_timeout": 0})["result"] == "unchanged"
    assert engine.state.read_json("confirmed.json")["version"] == 2
    assert engine.state.bundle_file(x["hash"]).exists()


def test_missing_confirmed_bundle_heals_from_the_last_one_kept(env, tmp_path, caplog):
    engine, dp, clock, _ = env
    x, y = bundle(), bundle(["-j DROP"])
    engine.apply({"bundle": y, "version": 1, "confirm_timeout": 0})
    engine.apply({"bundle": x, "version": 2, "confirm_timeout": 0})
    engine.shutdown()
    engine.state.bundle_file(y["hash"]).write_text(json.dumps(y))  # an older one left
    engine.state.bundle_file(x["hash"]).unlink()
    with caplog.at_level(logging.ERROR, logger="rampart.agent"):
        again = Engine(StateDir(tmp_path), dp, clock=clock)
        res = again.start()
    assert any(
        r.levelno == logging.ERROR and "not stored" in r.getMessage() for r in caplog.records
    )
    assert res["restored"] == y["hash"] and res["version"] == 2
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j DROP"]
    confirmed = again.state.read_json("confirmed.json")
    assert confirmed["healed_from"] == x["hash"] and confirmed["hash"] == y["hash"]
    # the console can push again, above the version it had
    assert again.apply({"bundle": x, "version": 3, "confirm_timeout": 0})["result"] == "applied"
    assert "healed_from" not in again.state.read_json("confirmed.json")
    again.shutdown()


def test_nothing_left_keeps_the_kernel_and_starts(env, tmp_path, caplog):
    engine, dp, clock, _ = env
    x = bundle()
    engine.apply({"bundle": x, "version": 4, "confirm_timeout": 0})
    engine.shutdown()
    engine.state.bundle_file(x["hash"]).unlink()
    before = json.dumps(dp.tables, sort_keys=True)
    with caplog.at_level(logging.ERROR, logger="rampart.agent"):
        again = Engine(StateDir(tmp_path), dp, clock=clock)
        res = again.start()
        assert "lost" in res["reason"] and res["version"] == 4
        assert again.start()["reason"] == res["reason"]  # a restart keeps it too
    assert json.dumps(dp.tables, sort_keys=True) == before  # never emptied
    st = again.status()
    assert st["applied"] is None and st["drift"]["drifted"]
    res = again.apply({"bundle": bundle(["-j DROP"]), "version": 5, "confirm_timeout": 0})
    assert res["result"] == "applied"
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j DROP"]
    assert not again.status()["drift"]["drifted"]
    again.shutdown()
