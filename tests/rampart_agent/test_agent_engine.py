"""Apply engine over the recording dataplane: all-or-nothing, confirm, probes, recovery."""

import json
import shutil
import time

import pytest

from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.engine import AgentError, Engine
from rampart_agent.sample import make_bundle, set_name
from rampart_agent.state import JOURNAL_FILE, StateDir

FOREIGN = "-s 198.18.9.9/32 -j ACCEPT"


class FakeClock:
    def __init__(self):
        self.t = 1_000_000.0

    def time(self):
        return self.t

    def monotonic(self):
        return self.t

    def sleep(self, s):
        self.t += s


def bundle(rules=("-j ACCEPT",), extra_chain=None, v6=True, sets=None):
    chains = {"RPT-INPUT": list(rules)}
    if extra_chain:
        chains.update(extra_chain)
    spec = {"filter": {"chains": chains, "jumps": {"INPUT": ["RPT-INPUT"]}}}
    return make_bundle(v4=spec, v6=spec if v6 else None, sets=sets)


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


def test_kernel_rejection_leaves_previous_policy(env):
    engine, dp, _, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    before = {f: {t: dict(c) for t, c in tables.items()} for f, tables in dp.tables.items()}
    # a chain loop passes --test but the kernel refuses it
    loop = bundle(["-j RPT-A"], {"RPT-A": ["-j RPT-B"], "RPT-B": ["-j RPT-A"]})
    with pytest.raises(AgentError) as exc:
        engine.apply({"bundle": loop, "version": 2, "confirm_timeout": 0})
    assert exc.value.status == 422 and "Too many links" in str(exc.value)
    assert dp.tables == before
    assert not engine.state.file(JOURNAL_FILE).exists()
    assert engine.status()["applied"]["version"] == 1


def test_v6_failure_undoes_v4(env):
    engine, dp, _, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    before = {f: {t: dict(c) for t, c in tables.items()} for f, tables in dp.tables.items()}
    dp.fail_on = lambda fam, payload: "v6 refused" if fam == "v6" and "DROP" in payload else None
    with pytest.raises(AgentError):
        engine.apply({"bundle": bundle(["-j DROP"]), "version": 2, "confirm_timeout": 0})
    assert dp.tables == before


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


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


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


def test_drift_reported_with_diff_and_repaired_by_next_apply(env):
    engine, dp, _, _ = env
    rules = [
        f'-s 198.18.0.{i} -m comment --comment "rpt:u{i}:0000000{i}" -j ACCEPT' for i in range(1, 4)
    ]
    engine.apply({"bundle": bundle(rules), "version": 1, "confirm_timeout": 0})
    del dp.tables["v4"]["filter"]["RPT-INPUT"][1]
    st = engine.status()
    assert st["drift"]["drifted"] and "-v4 filter RPT-INPUT rpt:u2:00000002" in st["drift"]["diff"]
    # an in-place edit would delete a rule that is not there: the engine rewrites instead
    engine.apply({"bundle": bundle(rules[:2] + ["-j DROP"]), "version": 2, "confirm_timeout": 0})
    assert len(dp.tables["v4"]["filter"]["RPT-INPUT"]) == 3
    assert not engine.status()["drift"]["drifted"]


def test_local_apply_accepts_bare_bundle(env):
    engine, dp, _, _ = env
    res = engine.apply(bundle(), local=True)
    assert res["result"] == "applied" and res["version"] == 1
    assert engine.status()["applied"]["confirmed"] is True


@pytest.mark.parametrize(
    "req",
    [
        {},
        {"bundle": "x", "version": 1},
        {"bundle": {}, "version": "1"},
        {"bundle": {}, "version": 1, "confirm_timeout": -1},
        {"bundle": {}, "version": 1, "probes": [{"type": "udp", "host": "x"}]},
    ],
)
def test_malformed_requests_are_400(env, req):
    engine, _, _, _ = env
    with pytest.raises(AgentError) as exc:
        engine.apply(req)
    assert exc.value.status == 400


def test_rule_edited_by_hand_keeping_its_comment_is_drift(env):
    engine, dp, _, _ = env
    rule = '-s 198.18.0.1 -m comment --comment "rpt:u1:00000001" -j ACCEPT'
    engine.apply({"bundle": bundle([rule]), "version": 1, "confirm_timeout": 0})
    assert not engine.status()["drift"]["drifted"]  # records the kernel's rendering
    dp.tables["v4"]["filter"]["RPT-INPUT"][0] = rule.replace("198.18.0.1", "198.18.0.0/15")
    st = engine.status()
    assert st["drift"]["drifted"] and "198.18.0.0/15" in st["drift"]["diff"]


def _jump_bundle(jumps, rules=("-j ACCEPT",)):
    chains = {name: list(rules) for name in ("RPT-INPUT", "RPT-OUTPUT")}
    return make_bundle(v4={"filter": {"chains": chains, "jumps": jumps}})


def test_incremental_apply_trusts_its_record_and_drift_brings_the_jump_back(env):
    """Without an in-process read, an incremental apply does not read the built-ins: a
    rule put above our jump by someone else stays until the status poll sees the drift;
    the next apply then rewrites in full and puts our jump back on top."""
    engine, dp, _, _ = env
    assert not dp.reads_jumps_in_process
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    dp.tables["v4"]["filter"]["INPUT"].insert(0, "-s 198.18.7.7/32 -j DROP")
    reads = []
    real_read = dp.read
    dp.read = lambda *a, **k: reads.append(a) or real_read(*a, **k)
    engine.apply({"bundle": bundle(["-j DROP"]), "version": 2, "confirm_timeout": 0})
    assert reads == []  # the record was trusted: no read before the write
    assert dp.tables["v4"]["filter"]["INPUT"][1] == "-m comment --comment rpt:jump -j RPT-INPUT"
    assert engine.status()["drift"]["drifted"]
    engine.apply({"bundle": bundle(["-j REJECT"]), "version": 3, "confirm_timeout": 0})
    assert dp.tables["v4"]["filter"]["INPUT"][:2] == [
        "-m comment --comment rpt:jump -j RPT-INPUT",
        "-s 198.18.7.7/32 -j DROP",
    ]
    assert not engine.status()["drift"]["drifted"]


def test_wrong_belief_about_a_jump_fails_safe_into_a_full_rewrite(env):
    """Our jump deleted by hand, then a bundle that drops that jump: the delete by rule
    text fails (it never deletes by a guessed position, which could hit someone else's
    rule), and the full rewrite that follows reads the kernel and gets it right."""
    engine, dp, _, _ = env
    engine.apply(
        {
            "bundle": _jump_bundle({"INPUT": ["RPT-INPUT"], "OUTPUT": ["RPT-OUTPUT"]}),
            "version": 1,
            "confirm_timeout": 0,
        }
    )
    f = dp.tables["v4"]["filter"]
    f["INPUT"].remove("-m comment --comment rpt:jump -j RPT-INPUT")
    f["INPUT"].insert(0, "-s 198.18.7.8/32 -j ACCEPT")
    engine.apply(
        {"bundle": _jump_bundle({"OUTPUT": ["RPT-OUTPUT"]}), "version": 2, "confirm_timeout": 0}
    )
    assert f is not dp.tables["v4"]["filter"]
    f = dp.tables["v4"]["filter"]
    assert f["INPUT"] == ["-s 198.18.7.8/32 -j ACCEPT", FOREIGN]
    assert f["OUTPUT"] == ["-m comment --comment rpt:jump -j RPT-OUTPUT"]
    failed = [p for kind, p in dp.payloads if kind == "iptables-v4" and "-D INPUT -m comment" in p]
    assert failed, "the believed jump was deleted by its rule text"
    assert not engine.status()["drift"]["drifted"]


def test_set_damaged_by_hand_is_drift_and_the_next_apply_refills_it(env):
    engine, dp, _, _ = env
    members = ["198.18.1.0/24", "198.18.2.0/24", "198.18.3.0/24"]
    s = set_name(4, members)
    rule = f"-m set --match-set {s} src -j ACCEPT"
    engine.apply(
        {"bundle": bundle([rule], v6=False, sets={s: members}), "version": 1, "confirm_timeout": 0}
    )

    def entries():  # the recording dataplane keeps the lines it was given
        return [line.split()[-1] for line in dp.sets[s][1:]]

    dp.sets[s].pop()  # someone deleted an entry
    st = engine.status()
    assert st["drift"]["drifted"] and f"set {s} entries=2" in st["drift"]["diff"]
    engine.apply(
        {
            "bundle": bundle([rule, "-j DROP"], v6=False, sets={s: members}),
            "version": 2,
            "confirm_timeout": 0,
        }
    )
    assert entries() == members and not any(n.startswith("rpt-tmp-") for n in dp.sets)
    assert any(kind == "ipset" and "swap rpt-tmp-" in p for kind, p in dp.payloads)
    assert not engine.status()["drift"]["drifted"]


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
