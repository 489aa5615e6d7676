"""Counters per rule uuid (rampart_agent/counters.py): summed once per packet, and what a
change to a chain takes from them."""

from rampart_agent.bundle import Bundle
from rampart_agent.counters import (
    CounterLedger,
    add_counts,
    losing_chains,
    lost_in_family,
    lost_in_table,
)
from rampart_agent.dataplane import LiveRule, LiveTable
from rampart_agent.ruleset import Table
from rampart_agent.state import COUNTERS_FILE, StateDir
from tests.rampart_agent.engine_env import bundle

A, B, C = (
    "0000000a-aaaa-4000-8000-000000000000",
    "0000000b-aaaa-4000-8000-000000000000",
    "0000000c-aaaa-4000-8000-000000000000",
)


def live(uuid: str, packets: int, target: str = "ACCEPT") -> LiveRule:
    return LiveRule("", f"rpt:{uuid}:00000000", target, packets, packets * 60)


def line(uuid: str, port: int, target: str = "ACCEPT") -> str:
    return (
        f'-A RPT-WEB -p udp -m udp --dport {port} -m comment --comment "rpt:{uuid}:0" -j {target}'
    )


def test_a_logged_rule_counts_each_packet_once_and_system_rules_not_at_all():
    counts: dict[str, list[int]] = {}
    rules = [
        live(A, 3, "LOG"),  # the LOG rule of a `log: true` rule: same tag as its verdict
        live(A, 3),
        live(B, 2),
        LiveRule("", "rpt:sys:default", "DROP", 9, 900),
        LiveRule("", "rpt:jump", "RPT-WEB", 9, 900),
        LiveRule("", None, "ACCEPT", 9, 900),  # not ours
    ]
    add_counts(rules, counts)
    assert counts == {A: [3, 180], B: [2, 120]}


def test_only_rules_that_leave_the_kernel_lose_their_counts():
    before = Table(
        "filter", {"RPT-WEB": [line(A, 1), line(B, 2), line(C, 3)], "RPT-OLD": [line(C, 4)]}
    )
    kernel = LiveTable(
        chains={"RPT-WEB": [live(A, 5), live(B, 6), live(C, 7)], "RPT-OLD": [live(C, 8)]}
    )
    # unchanged: nothing; a rule appended (in-place edit, nothing deleted): nothing
    same = Table("filter", dict(before.chains))
    assert losing_chains(before, same, inplace_limit=100) == {}
    appended = Table(
        "filter", {**before.chains, "RPT-WEB": [*before.chains["RPT-WEB"], line(A, 9)]}
    )
    assert losing_chains(before, appended, inplace_limit=100) == {}
    # the middle rule replaced in place: only it; the removed chain: all of it
    edited = Table("filter", {"RPT-WEB": [line(A, 1), line(B, 22), line(C, 3)]})
    losing = losing_chains(before, edited, inplace_limit=100)
    assert losing == {"RPT-WEB": (1, 1), "RPT-OLD": None}
    assert lost_in_table(kernel, losing) == {B: [6, 360], C: [8, 480]}
    # the first rule moved to the end: no rule keeps its place, the chain is rewritten
    moved = Table("filter", {"RPT-WEB": [line(B, 2), line(C, 3), line(A, 1)]})
    losing = losing_chains(before, moved, inplace_limit=100)
    assert losing["RPT-WEB"] is None
    assert lost_in_table(kernel, losing) == {A: [5, 300], B: [6, 360], C: [15, 900]}
    # a chain longer than the in-place limit is rewritten, like plan_table does
    assert losing_chains(before, edited, inplace_limit=2)["RPT-WEB"] is None
    # a full rewrite flushes every chain of ours
    assert lost_in_family({"filter": kernel}) == {A: [5, 300], B: [6, 360], C: [15, 900]}


def test_the_ledger_numbers_resets_per_boot_and_keeps_the_recent_ones(tmp_path):
    state = StateDir(tmp_path / "state")
    state.ensure()
    ledger = CounterLedger(state, "boot-1")
    holds = Bundle.parse(bundle([f'-m comment --comment "rpt:{A}:00000001" -j ACCEPT']))
    assert ledger.record({A: [0, 0]}, 1.0, holds) is None  # nothing lost: no reset
    first = ledger.record({A: [4, 240], B: [2, 120], C: [0, 0]}, 2.0, holds)
    assert first == {
        "boot_id": "boot-1",
        "generation": 1,
        "at": 2.0,
        # B is in no rule of the bundle the kernel now holds: its final count
        "lost": {A: {"packets": 4, "bytes": 240}, B: {"packets": 2, "bytes": 120, "gone": True}},
    }
    assert "gone" not in ledger.record({B: [1, 60]}, 2.5, None)["lost"][B]  # holds: unknown
    for i in range(19):
        ledger.record({B: [1, 60]}, 3.0 + i, holds)
    # another process (an agent restart) reads the same record from the runtime directory
    epoch = CounterLedger(StateDir(tmp_path / "state"), "boot-1").epoch()
    assert epoch["generation"] == 21 and len(epoch["resets"]) == 16
    assert (
        epoch["resets"][-1]["generation"] == 21
        and state.file(COUNTERS_FILE).parent == state.run_path
    )
    # after a reboot the kernel counts from zero: generations start again
    assert CounterLedger(state, "boot-2").epoch() == {
        "boot_id": "boot-2",
        "generation": 0,
        "resets": [],
    }
