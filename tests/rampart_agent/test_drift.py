"""Drift in the status answer: chains, rules edited by hand, damaged sets."""

from rampart_agent.drift import family_lines, want_lines
from rampart_agent.sample import set_name
from tests.rampart_agent.engine_env import bundle


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


def test_rule_edited_by_hand_keeping_its_comment_is_drift(env):
    engine, dp, _, _ = env
    rule = '-s 198.18.0.1 -m comment --comment "rpt:u1:00000001" -j ACCEPT'
    engine.apply({"bundle": bundle([rule]), "version": 1, "confirm_timeout": 0})
    assert not engine.status()["drift"]["drifted"]  # records the kernel's rendering
    dp.tables["v4"]["filter"]["RPT-INPUT"][0] = rule.replace("198.18.0.1", "198.18.0.0/15")
    st = engine.status()
    assert st["drift"]["drifted"] and "198.18.0.0/15" in st["drift"]["diff"]


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


def test_a_rule_inserted_above_our_jump_is_shown_with_its_text_and_place(env):
    engine, dp, _, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    assert not engine.status()["drift"]["drifted"]
    dp.tables["v4"]["filter"]["INPUT"].insert(0, "-p tcp --dport 9100 -j ACCEPT")
    drift = engine.status()["drift"]
    assert drift["drifted"] and "+v4 filter INPUT #2 -> RPT-INPUT" in drift["diff"]
    assert (
        "v4 filter INPUT #1: -A INPUT -p tcp --dport 9100 -j ACCEPT  "
        "[before Rampart's jump to RPT-INPUT (#2): runs first]"
    ) in drift["diff"]
    before = next(r for r in drift["rules"] if r["position"] == 1)
    assert before["rule"] == "-A INPUT -p tcp --dport 9100 -j ACCEPT"
    assert before["where"].startswith("before Rampart's jump") and before["chain"] == "INPUT"
    # the admin's rule that was there before stays below the jump: named, not the cause
    after = [r for r in drift["rules"] if r["where"].startswith("after Rampart's jump")]
    assert after and all(r["position"] > 2 for r in after)


def test_an_untagged_rule_inside_our_chain_is_shown_with_its_text(env):
    engine, dp, _, _ = env
    rule = '-s 198.18.0.1 -m comment --comment "rpt:u1:00000001" -j ACCEPT'
    engine.apply({"bundle": bundle([rule]), "version": 1, "confirm_timeout": 0})
    dp.tables["v4"]["filter"]["RPT-INPUT"].insert(0, "-p tcp --dport 9100 -j ACCEPT")
    drift = engine.status()["drift"]
    assert "+v4 filter RPT-INPUT (no rpt comment) -j ACCEPT" in drift["diff"]
    assert (
        "v4 filter RPT-INPUT #1: -A RPT-INPUT -p tcp --dport 9100 -j ACCEPT  [inside Rampart's chain]"
        in drift["diff"]
    )
    assert [r["chain"] for r in drift["rules"]] == ["RPT-INPUT"]


def test_no_drift_no_rules_listed_though_foreign_rules_follow_our_jump(env):
    engine, _, _, _ = env
    engine.apply({"bundle": bundle(["-j DROP"]), "version": 1, "confirm_timeout": 0})
    drift = engine.status()["drift"]
    assert drift == {"drifted": False, "diff": "", "rules": []}


def test_bundle_side_kept_per_bundle_still_sees_drift_made_after_it(env):
    engine, dp, _, _ = env
    rules = [
        f'-s 198.18.0.{i} -m comment --comment "rpt:u{i}:0000000{i}" -j ACCEPT' for i in (1, 2)
    ]
    engine.apply({"bundle": bundle(rules), "version": 1, "confirm_timeout": 0})
    live = engine.store.load(engine.state.read_json("live.json")["hash"])
    assert want_lines("v4", live) == tuple(family_lines("v4", live, None)[0])
    assert want_lines("v4", live) is want_lines("v4", live)  # computed once
    assert not engine.status()["drift"]["drifted"]
    dp.tables["v4"]["filter"]["RPT-INPUT"].insert(0, "-A RPT-INPUT -j ACCEPT")
    st = engine.status()
    assert (
        st["drift"]["drifted"]
        and "+v4 filter RPT-INPUT (no rpt comment) -j ACCEPT" in (st["drift"]["diff"])
    )
    del dp.tables["v4"]["filter"]["RPT-INPUT"][0]
    assert engine.status()["drift"] == {"drifted": False, "diff": "", "rules": []}
