"""Apply requests that break the request format are refused with 400 before the kernel is
touched; a failure after it was touched is rolled back (or its deadline armed)."""

import json

import pytest

from rampart_agent import engine as engine_module
from rampart_agent.engine import AgentError
from tests.rampart_agent.engine_env import bundle, wait_until


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


@pytest.mark.parametrize(
    ("probe", "field"),
    [
        (
            {"type": "tcp", "host": "198.18.255.1", "port": 22, "timeout": "abc"},
            "probes[1].timeout",
        ),
        ({"type": "icmp", "host": "198.18.255.1", "timeout": -1}, "probes[1].timeout"),
        ({"type": "icmp", "host": "198.18.255.1", "timeout": float("nan")}, "probes[1].timeout"),
        ({"type": "tcp", "host": "198.18.255.1", "port": True}, "probes[1].port"),
        ({"type": "icmp", "host": "-f"}, "probes[1].host"),
        ("tcp", "probes[1]"),
    ],
)
def test_a_malformed_probe_is_400_naming_the_field_and_the_kernel_is_unchanged(env, probe, field):
    engine, dp, _, _ = env
    before = len(dp.payloads), json.dumps(dp.tables, sort_keys=True)
    good = {"type": "icmp", "host": "198.18.255.1", "timeout": 1}
    with pytest.raises(AgentError) as exc:
        engine.apply(
            {"bundle": bundle(), "version": 1, "confirm_timeout": 30, "probes": [good, probe]}
        )
    assert exc.value.status == 400 and exc.value.body["field"] == field
    assert field in str(exc.value)
    assert (len(dp.payloads), json.dumps(dp.tables, sort_keys=True)) == before
    assert engine.status()["pending"] is None


def test_a_failure_after_the_kernel_changed_rolls_back_at_once(env):
    engine, dp, _, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})

    def broken_probe(probe):
        raise RuntimeError("probe tool crashed")

    engine.probe = broken_probe
    with pytest.raises(AgentError) as exc:
        engine.apply(
            {
                "bundle": bundle(["-j DROP"]),
                "version": 2,
                "confirm_timeout": 300,
                "probes": [{"type": "icmp", "host": "198.18.255.1"}],
            }
        )
    assert exc.value.status == 422 and exc.value.body["result"] == "rolled_back"
    assert "probe tool crashed" in str(exc.value)
    assert dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"]
    st = engine.status()
    assert st["pending"] is None and st["last_rollback"]["version"] == 2


def test_if_that_rollback_fails_too_the_deadline_is_armed(env, monkeypatch):
    """Never a pending policy without a deadline: the background thread retries."""
    engine, dp, clock, _ = env
    engine.apply({"bundle": bundle(), "version": 1, "confirm_timeout": 0})
    monkeypatch.setattr(engine_module, "ROLLBACK_RETRY", 0.2)
    real_rollback = engine._rollback_locked
    calls = []

    def flaky_rollback(reason, to_record):
        calls.append(reason)
        if len(calls) == 1:
            raise OSError("disk full")
        return real_rollback(reason, to_record)

    monkeypatch.setattr(engine, "_rollback_locked", flaky_rollback)
    monkeypatch.setattr(engine.store, "gc", lambda keep=None: (_ for _ in ()).throw(OSError("EIO")))
    with pytest.raises(AgentError) as exc:
        engine.apply({"bundle": bundle(["-j DROP"]), "version": 2, "confirm_timeout": 300})
    assert exc.value.status == 500 and "rollback failed" in str(exc.value)
    pending = engine._record("live.json")
    assert pending["version"] == 2 and not pending["confirmed"] and pending["deadline"]
    monkeypatch.undo()
    clock.t += 1  # the retry's deadline passes
    wait_until(lambda: dp.tables["v4"]["filter"]["RPT-INPUT"] == ["-j ACCEPT"])
    wait_until(lambda: engine.status()["pending"] is None)
