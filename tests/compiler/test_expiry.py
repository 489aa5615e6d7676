"""Expiring rules carry the kernel time match (`-m time --datestop`, UTC), and the tracer
answers as the kernel does before and after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from compiler import Packet, PolicyDocument, Tracer, compile_device
from compiler.lower.rulesets import kernel_until

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
EXPIRES = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)
RID = "5f0c1f4e-6b1e-4d7a-9a55-0d8a2f6b7c01"


def doc(**rule) -> dict:
    """One device, input dropped by default, one rule set with `rule` then a plain rule."""
    first = {
        "id": RID,
        "chain": "input",
        "action": "accept",
        "sources": ["198.18.0.5"],
        "protocol": "tcp",
        "dports": ["443"],
        **rule,
    }
    plain = {"chain": "input", "action": "accept", "protocol": "udp", "dports": ["53"]}
    return {
        "version": 1,
        "addresses": [{"name": "office", "value": "198.18.0.0/24"}],
        "address_groups": [
            {"name": "many", "members": [f"198.18.9.{i}" for i in range(1, 12)] + ["2001:2::9"]}
        ],
        "services": [{"name": "https", "protocol": "tcp", "ports": ["443"]}],
        "rulesets": [{"name": "temp", "rules": [first, plain]}],
        "devices": [
            {
                "name": "d",
                "rulesets": ["temp"],
                "default_policy": {"input": "drop", "forward": "drop", "output": "accept"},
            }
        ],
    }


def compiled(now: datetime = NOW, **rule):
    return compile_device(PolicyDocument.from_dict(doc(**rule)), "d", now=now)


def rule_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("-A RPT-I-temp")]


def test_expiring_rule_carries_the_datestop_in_utc():
    bundle = compiled(expires_at="2026-11-25T13:30:00+01:00")  # 12:30 UTC
    first, plain = rule_lines(bundle.iptables_v4)
    # the kernel keeps matching through the datestop second: the stop is the second before
    assert " -m time --datestop 2026-11-25T12:29:59 -m comment " in first
    assert "-m time" not in plain
    assert "-m time" not in bundle.iptables_v6  # an IPv4-only rule


def test_every_kernel_rule_of_an_expiring_rule_has_the_time_match():
    """The general path too: LOG rules, several kernel rules, both families."""
    bundle = compiled(
        expires_at="2026-11-25T12:30:00Z",
        sources=["many"],
        protocol=None,
        dports=None,
        services=["https"],
        log=True,
    )
    v4, v6 = rule_lines(bundle.iptables_v4), rule_lines(bundle.iptables_v6)
    expiring = [line for line in v4 + v6 if "dport 443" in line]
    logs = [line for line in expiring if " -j LOG " in line]
    accepts = [line for line in expiring if line.endswith(" -j ACCEPT")]
    # 11 IPv4 sources collapse to 4 networks, one IPv6: a LOG and an ACCEPT for each
    assert len(logs) == len(accepts) == 5 and len(expiring) == 10
    assert any(" -s 2001:2::9/128 " in line for line in accepts)
    assert all("-m time --datestop 2026-11-25T12:29:59 " in line for line in expiring)


def test_a_fraction_of_a_second_ends_the_match_early_never_late():
    assert kernel_until(datetime(2026, 11, 25, 12, 30, 0, 600_000, tzinfo=UTC)) == EXPIRES
    bundle = compiled(expires_at="2026-11-25T12:30:00.600000Z")
    assert "--datestop 2026-11-25T12:29:59 " in bundle.iptables_v4


def test_beyond_what_iptables_accepts_there_is_no_time_match():
    """iptables refuses a datestop after 2038; such a rule leaves with the compile after
    its expiry (and the scheduled redeploy)."""
    assert kernel_until(datetime(2039, 1, 1, tzinfo=UTC)) is not None  # stop 2038-12-31
    assert kernel_until(datetime(2039, 1, 1, 0, 0, 1, tzinfo=UTC)) is None
    bundle = compiled(expires_at="2040-01-01T00:00:00Z")
    (first, _) = rule_lines(bundle.iptables_v4)
    assert "dport 443" in first and "-m time" not in first


def test_an_expired_rule_is_left_out():
    bundle = compiled(now=EXPIRES, expires_at="2026-11-25T12:30:00Z")
    assert [line for line in rule_lines(bundle.iptables_v4) if "443" in line] == []
    assert RID not in bundle.rules


def packet() -> Packet:
    return Packet.from_params(
        {"protocol": "tcp", "source": "198.18.0.5", "destination": "198.18.1.1", "dport": "443"}
    )


def test_tracer_matches_the_rule_only_before_its_expiry():
    program = compiled(expires_at="2026-11-25T12:30:00Z").program
    assert program is not None and program.now == NOW
    assert Tracer(program).trace(packet()).rule_id == RID  # at the compile time
    before = Tracer(program, now=EXPIRES - timedelta(microseconds=1)).trace(packet())
    assert (before.verdict, before.rule_id) == ("accept", RID)
    for at in (EXPIRES, EXPIRES + timedelta(days=1)):
        after = Tracer(program, now=at).trace(packet())
        assert (after.verdict, after.tag) == ("drop", "rpt:sys:default"), at
    assert "--datestop" in before.path[-1].rule


def test_tracer_ignores_nothing_without_expiry():
    program = compiled().program
    assert program is not None
    far = Tracer(program, now=NOW + timedelta(days=10_000)).trace(packet())
    assert (far.verdict, far.rule_id) == ("accept", RID)
