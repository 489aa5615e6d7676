"""Bundle files: where they live, when they are written, and a lost one."""

import json

import pytest

from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.engine import AgentError, Engine
from rampart_agent.state import StateDir
from tests.rampart_agent.engine_env import FakeClock, bundle, wait_until


def test_runtime_records_on_the_runtime_dir_bundles_made_durable_on_confirm(env, tmp_path):
    """live/journal and a bundle awaiting its confirm live in the runtime directory (a tmpfs
    on real hosts, emptied by a reboot with the kernel's rules); the confirm moves the
    bundle into the state directory. The pending file is written off the apply's path."""
    engine, dp, _, _ = env
    state = engine.state
    b = bundle(["-j DROP"])
    engine.apply({"bundle": b, "version": 1, "confirm_timeout": 300})
    assert state.file("live.json").parent == tmp_path / "run"
    assert (tmp_path / "run" / "live.json").exists() and not (tmp_path / "live.json").exists()
    pending = state.bundle_file(b["hash"], pending=True)
    wait_until(pending.exists)
    assert not state.bundle_file(b["hash"]).exists()
    stored = json.loads(pending.read_bytes())
    assert stored["iptables_v4"] == b["iptables_v4"] and "rules" not in stored
    engine.confirm(1)
    assert state.bundle_file(b["hash"]).exists() and not pending.exists()
    assert json.loads(state.bundle_file(b["hash"]).read_bytes()) == stored


def test_pending_bundle_never_stored_means_a_full_rewrite_at_start(env, tmp_path):
    """Killed within milliseconds of an apply, before its bundle file was written: the
    start cannot trust an incremental path from a bundle it does not have, so it reads
    the kernel and rewrites everything to the confirmed bundle."""
    engine, dp, clock, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    b2 = bundle(["-j DROP"], extra_chain={"RPT-NEW": ["-j DROP"]})
    engine.apply({"bundle": b2, "version": 2, "confirm_timeout": 300})
    engine.shutdown()
    engine.state.bundle_file(b2["hash"], pending=True).unlink()
    again = Engine(StateDir(tmp_path), dp, clock=clock)
    res = again.start()
    assert res["full"] and res["reason"] == "agent restarted before the confirm"
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]
    assert "RPT-NEW" not in dp.tables["v4"]["filter"]
    assert not again.status()["drift"]["drifted"]


def test_a_refused_apply_after_a_lost_bundle_file_restores_the_confirmed_policy(env, tmp_path):
    """The kernel holds a bundle whose file is gone (the agent died before writing it): a
    new apply that the kernel refuses is undone to the confirmed bundle — never to an
    empty firewall."""
    engine, dp, clock, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    pending = bundle(["-j DROP"])
    engine.apply({"bundle": pending, "version": 2, "confirm_timeout": 300})
    engine.shutdown()
    engine.state.bundle_file(pending["hash"], pending=True).unlink()
    other = Engine(StateDir(tmp_path), dp, clock=clock)  # e.g. the local `apply` command
    dp.fail_on = lambda fam, payload: "refused" if fam == "v6" and "REJECT" in payload else None
    with pytest.raises(AgentError) as exc:
        other.apply(
            {"bundle": bundle(["-j REJECT"]), "version": 3, "confirm_timeout": 0}, local=True
        )
    assert exc.value.status == 422
    for family in ("v4", "v6"):
        assert dp.tables[family]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]


def test_a_one_shot_command_stores_its_pending_bundle_before_it_exits(tmp_path):
    """Without `start` (the local `apply` command) there is no background thread: the
    bundle awaiting its confirm is on disk when apply returns, for `status` and `confirm`."""
    engine = Engine(StateDir(tmp_path), RecordingDataplane(), clock=FakeClock())
    b = bundle()
    engine.apply({"bundle": b, "version": 1, "confirm_timeout": 600}, local=True)
    assert engine.state.bundle_file(b["hash"], pending=True).exists()
    again = Engine(StateDir(tmp_path), engine.dp, clock=FakeClock())
    assert again.status()["applied"]["version"] == 1
    assert again.confirm(1)["result"] == "confirmed"
    assert engine.state.bundle_file(b["hash"]).exists()
