"""Rule counters added up across the agents' counter resets (agents/services/counters.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import services
from agents.models import RuleCounter
from tests.support.deploy import make_device

pytestmark = pytest.mark.django_db

RULE = "8c1f8f55-64d5-4b5a-9d3e-6a7f1c0e2b11"


def _n(packets: int) -> dict:
    return {"packets": packets, "bytes": packets * 100}


def _poll(device, packets, *, generation, resets=(), boot="boot-a", at=None) -> None:
    services.counters_ingest(
        device=device,
        counters={RULE: _n(packets)},
        at=at or timezone.now(),
        epoch={"boot_id": boot, "generation": generation, "resets": list(resets)},
    )


def _reset(generation: int, lost: int, boot: str = "boot-a") -> dict:
    return {"boot_id": boot, "generation": generation, "at": 0, "lost": {RULE: _n(lost)}}


def _total() -> tuple[int, int]:
    c = RuleCounter.objects.get()
    return c.packets, c.bytes


def test_counters_survive_unannounced_resets_and_never_look_like_zero():
    """Agents that do not report their resets: a raw value below the last one is all new."""
    device = make_device("web-1")
    rule = "8c1f8f55-64d5-4b5a-9d3e-6a7f1c0e2b11"
    t0 = timezone.now()
    services.counters_ingest(device=device, counters={rule: {"packets": 10, "bytes": 1000}}, at=t0)
    services.counters_ingest(
        device=device, counters={rule: {"packets": 15, "bytes": 1500}}, at=t0 + timedelta(minutes=1)
    )
    c = RuleCounter.objects.get()
    assert (c.packets, c.bytes, c.last_hit_at) == (15, 1500, t0 + timedelta(minutes=1))
    # counters went back to 3: the chain was rewritten; 3 packets are new traffic, not -12
    services.counters_ingest(
        device=device, counters={rule: {"packets": 3, "bytes": 300}}, at=t0 + timedelta(minutes=2)
    )
    c.refresh_from_db()
    assert (c.packets, c.bytes, c.last_hit_at) == (18, 1800, t0 + timedelta(minutes=2))
    # unchanged raw values: no traffic, last hit stays
    services.counters_ingest(
        device=device, counters={rule: {"packets": 3, "bytes": 300}}, at=t0 + timedelta(minutes=3)
    )
    c.refresh_from_db()
    assert c.packets == 18 and c.last_hit_at == t0 + timedelta(minutes=2)
    # a reboot (boot id changed) with more packets than before: all of them are new
    services.counters_ingest(
        device=device,
        counters={rule: {"packets": 20, "bytes": 2000}},
        at=t0 + timedelta(minutes=4),
        reset=True,
    )
    c.refresh_from_db()
    assert c.packets == 38 and c.bytes == 3800
    services.counters_ingest(device=device, counters={"not-a-uuid": {"packets": 1}}, at=t0)
    assert RuleCounter.objects.count() == 1


def test_hits_before_a_rewrite_are_kept_when_the_new_count_overtakes_the_old():
    """The case that lost 50 of 113 hits: polled at 50, 10 more before the move, the
    rewrite zeroes the rule, 63 after it. Comparing raw values alone saw 63 > 50 as 13."""
    device = make_device("web-1")
    _poll(device, 50, generation=0)
    services.counter_reset_ingest(device=device, reset=_reset(1, 60), at=timezone.now())
    assert _total() == (50, 5000)  # the unpolled 10 come with the next reading
    _poll(device, 63, generation=1, resets=[_reset(1, 60)])  # the status repeats the reset
    assert _total() == (123, 12300)
    _poll(device, 63, generation=1, resets=[_reset(1, 60)])  # applied once only
    assert _total() == (123, 12300)


def test_a_reset_without_an_apply_answer_comes_with_the_status():
    device = make_device("web-1")
    _poll(device, 7, generation=0)
    _poll(device, 2, generation=2, resets=[_reset(1, 9), _reset(2, 4)])
    # 2 unpolled before reset 1, 4 lost by reset 2, 2 since
    assert _total() == (7 + 2 + 4 + 2, (7 + 2 + 4 + 2) * 100)


def test_hits_of_a_rule_never_polled_before_its_reset_count():
    """5 real hits, then a reset before the first poll: the rule is not 'never hit'."""
    device = make_device("web-1")
    at = timezone.now()
    services.counter_reset_ingest(device=device, reset=_reset(1, 5), at=at)
    _poll(device, 0, generation=1, at=at)
    c = RuleCounter.objects.get()
    assert (c.packets, c.last_hit_at) == (5, at)


def test_a_reading_older_than_an_applied_reset_is_ignored():
    device = make_device("web-1")
    _poll(device, 10, generation=0)
    services.counter_reset_ingest(device=device, reset=_reset(1, 12), at=timezone.now())
    _poll(device, 12, generation=0)  # read before the reset, ingested after it
    assert _total() == (10, 1000)
    _poll(device, 1, generation=1)
    assert _total() == (13, 1300)


def test_a_new_boot_counts_from_zero_and_restarts_the_generations():
    device = make_device("web-1")
    _poll(device, 40, generation=3)
    _poll(device, 7, generation=0, boot="boot-b")
    assert _total() == (47, 4700)
    services.counter_reset_ingest(device=device, reset=_reset(1, 9, "boot-b"), at=timezone.now())
    _poll(device, 1, generation=1, boot="boot-b")
    assert _total() == (50, 5000)


def test_a_counter_stored_before_resets_were_reported_keeps_its_baseline():
    device = make_device("web-1")
    services.counters_ingest(device=device, counters={RULE: _n(10)}, at=timezone.now())
    # the agent's earlier resets predate the stored reading: not applied again
    _poll(device, 12, generation=2, resets=[_reset(1, 30), _reset(2, 30)])
    assert _total() == (12, 1200)
    services.counter_reset_ingest(device=device, reset=_reset(3, 15), at=timezone.now())
    _poll(device, 0, generation=3)
    assert _total() == (15, 1500)


def test_a_rule_a_reset_removed_for_good_is_credited_its_final_count_at_once():
    device = make_device("web-1")
    _poll(device, 4, generation=0)
    at = timezone.now()
    gone = {**_reset(1, 9), "lost": {RULE: {**_n(9), "gone": True}}}
    services.counter_reset_ingest(device=device, reset=gone, at=at)
    c = RuleCounter.objects.get()
    assert (c.packets, c.bytes, c.last_hit_at, c.last_raw_packets) == (9, 900, at, 0)
    _poll(device, 0, generation=1, resets=[gone])  # repeated by the status: once only
    assert _total() == (9, 900)


def test_a_poll_writes_only_the_counters_that_moved_with_their_exact_values():
    device = make_device("web-1")
    rules = [f"8c1f8f55-64d5-4b5a-9d3e-{i:012x}" for i in range(20)]
    t0 = timezone.now()
    readings = {r: _n(5) for r in rules}
    epoch = {"boot_id": "boot-a", "generation": 1, "resets": []}
    services.counters_ingest(device=device, counters=readings, at=t0, epoch=epoch)
    stamps = dict(RuleCounter.objects.values_list("rule_uuid", "updated_at"))
    with CaptureQueriesContext(connection) as same:  # nothing moved: nothing written
        assert services.counters_ingest(device=device, counters=readings, at=t0, epoch=epoch) == 0
    assert not [q for q in same.captured_queries if q["sql"].startswith("UPDATE")]
    t1 = t0 + timedelta(seconds=30)
    moved = {**readings, rules[3]: _n(9), rules[7]: _n(5)}
    moved[rules[11]] = {"packets": 5, "bytes": 900}  # bytes only: no hit time
    with CaptureQueriesContext(connection) as wrote:
        assert services.counters_ingest(device=device, counters=moved, at=t1, epoch=epoch) == 2
    assert len([q for q in wrote.captured_queries if q["sql"].startswith("UPDATE")]) == 1
    got = {
        str(c.rule_uuid): (c.packets, c.bytes, c.last_raw_packets, c.last_raw_bytes, c.last_hit_at)
        for c in RuleCounter.objects.filter(device=device)
    }
    assert got[rules[3]] == (9, 900, 9, 900, t1)
    assert got[rules[11]] == (5, 900, 5, 900, t0)
    assert got[rules[0]] == (5, 500, 5, 500, t0)
    assert dict(RuleCounter.objects.values_list("rule_uuid", "updated_at")) == stamps
