"""The kernel transition: all or nothing, incremental on belief, full when it is wrong."""

import pytest

from rampart_agent.engine import AgentError
from rampart_agent.state import JOURNAL_FILE
from tests.rampart_agent.engine_env import FOREIGN, bundle, jump_bundle


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
    # the record was trusted for the plan: the only reads are the counters of the rules the
    # rewrite replaces (one table read per family, see counters.py), never the built-ins
    assert reads == [("v4", ["filter"]), ("v6", ["filter"])]
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
            "bundle": jump_bundle({"INPUT": ["RPT-INPUT"], "OUTPUT": ["RPT-OUTPUT"]}),
            "version": 1,
            "confirm_timeout": 0,
        }
    )
    f = dp.tables["v4"]["filter"]
    f["INPUT"].remove("-m comment --comment rpt:jump -j RPT-INPUT")
    f["INPUT"].insert(0, "-s 198.18.7.8/32 -j ACCEPT")
    engine.apply(
        {"bundle": jump_bundle({"OUTPUT": ["RPT-OUTPUT"]}), "version": 2, "confirm_timeout": 0}
    )
    assert f is not dp.tables["v4"]["filter"]
    f = dp.tables["v4"]["filter"]
    assert f["INPUT"] == ["-s 198.18.7.8/32 -j ACCEPT", FOREIGN]
    assert f["OUTPUT"] == ["-m comment --comment rpt:jump -j RPT-OUTPUT"]
    failed = [p for kind, p in dp.payloads if kind == "iptables-v4" and "-D INPUT -m comment" in p]
    assert failed, "the believed jump was deleted by its rule text"
    assert not engine.status()["drift"]["drifted"]
