"""`reject_with`: how a reject answers, per family; parsed, validated, compiled, traced,
written back. Absent means what it always meant (port unreachable)."""

from __future__ import annotations

import zlib

import pytest

from compiler import Packet, PolicyDocument, Tracer, compile_device
from compiler.document.serialise import rule_dict
from compiler.errors import DocumentError
from compiler.lower.tags import rule_tag, rule_tagger
from compiler.validate import rule_errors

from . import cases


def doc(*rules: dict, services: list | None = None) -> dict:
    out: dict = {
        "version": 1,
        "rulesets": [{"name": "rs", "rules": list(rules)}],
        "devices": [{"name": "d", "rulesets": ["rs"], "default_policy": {"input": "accept"}}],
    }
    if services:
        out["services"] = services
    return out


def compiled(*rules: dict, **kw):
    return compile_device(PolicyDocument.from_dict(doc(*rules, **kw)), "d", now=cases.NOW)


def reject(**kw) -> dict:
    return {"chain": "input", "action": "reject", "protocol": "tcp", "dports": ["22"], **kw}


def reject_lines(text: str) -> list[str]:
    return [line.split('"', 2)[2].strip() for line in text.splitlines() if "REJECT" in line]


@pytest.mark.parametrize(
    ("kind", "v4", "v6"),
    [
        (None, "icmp-port-unreachable", "icmp6-port-unreachable"),
        ("icmp-port-unreachable", "icmp-port-unreachable", "icmp6-port-unreachable"),
        ("tcp-reset", "tcp-reset", "tcp-reset"),
        ("icmp-admin-prohibited", "icmp-admin-prohibited", "icmp6-adm-prohibited"),
        ("icmp-host-unreachable", "icmp-host-unreachable", "icmp6-addr-unreachable"),
        ("icmp-net-unreachable", "icmp-net-unreachable", "icmp6-no-route"),
        ("icmp-host-prohibited", "icmp-host-prohibited", "icmp6-adm-prohibited"),
        ("icmp-net-prohibited", "icmp-net-prohibited", "icmp6-adm-prohibited"),
    ],
)
def test_compiled_per_family(kind, v4, v6):
    rule = reject() if kind is None else reject(reject_with=kind)
    bundle = compiled(rule)
    assert reject_lines(bundle.iptables_v4) == [f"-j REJECT --reject-with {v4}"]
    assert reject_lines(bundle.iptables_v6) == [f"-j REJECT --reject-with {v6}"]


def test_general_path_and_log_carry_the_type():
    """A rule off the fast path (two sources, a log) rejects with its type on every kernel
    rule; the LOG rule before it is unchanged."""
    bundle = compiled(
        reject(sources=["198.18.0.1", "198.18.0.2"], log=True, reject_with="tcp-reset")
    )
    lines = [line for line in bundle.iptables_v4.splitlines() if "RPT-I-rs" in line]
    assert len([line for line in lines if line.endswith("--reject-with tcp-reset")]) == 2
    assert all("reject-with" not in line for line in lines if "-j LOG" in line)


def test_tag_unchanged_without_the_key_and_changed_with_it():
    base = PolicyDocument.from_dict(doc(reject())).rulesets[0].rules[0]
    typed = base._replace(reject_with="tcp-reset")
    tagger = rule_tagger()
    assert tagger("x", base) == rule_tag("x", base)
    assert tagger("x", typed) == rule_tag("x", typed) != rule_tag("x", base)
    # the key of a rule without reject_with is the 18 fields it always was
    assert rule_tag("x", base) == "rpt:x:" + format(
        zlib.crc32(
            repr(
                (
                    "input",
                    "reject",
                    (),
                    (),
                    (),
                    "tcp",
                    ("22",),
                    (),
                    False,
                    False,
                    None,
                    None,
                    (),
                    False,
                    None,
                    None,
                    None,
                    None,
                )
            ).encode()
        ),
        "08x",
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (reject(reject_with="icmp-bogus"), "unknown reject type 'icmp-bogus'"),
        (reject(action="drop", reject_with="tcp-reset"), "needs action reject, not drop"),
        (reject(protocol="udp", reject_with="tcp-reset"), "tcp-reset needs protocol tcp"),
        ({"chain": "input", "action": "reject", "reject_with": "tcp-reset"}, "not any"),
    ],
)
def test_field_errors(rule, message):
    with pytest.raises(DocumentError) as exc:
        PolicyDocument.from_dict(doc(rule))
    assert any(
        e.path.endswith(".reject_with") and message in e.message for e in exc.value.errors
    ), exc.value.errors
    assert message in " ".join(rule_errors(rule)["reject_with"])


def test_tcp_reset_with_services():
    services = [
        {"name": "ssh", "protocol": "tcp", "ports": ["22"]},
        {"name": "dns", "protocol": "udp", "ports": ["53"]},
    ]
    ok = {"chain": "input", "action": "reject", "services": ["ssh"], "reject_with": "tcp-reset"}
    PolicyDocument.from_dict(doc(ok, services=services))
    mixed = {**ok, "services": ["ssh", "dns"]}
    with pytest.raises(DocumentError, match="tcp-reset needs protocol tcp"):
        PolicyDocument.from_dict(doc(mixed, services=services))
    assert rule_errors(mixed) == {}  # service protocols are unknown to a lone rule


def test_traced_verdict_stays_reject_with_the_type():
    tracer = Tracer(compiled(reject(reject_with="icmp-admin-prohibited")).program)
    base = {"protocol": "tcp", "dport": "22", "source": "198.18.0.9", "destination": "198.18.0.1"}
    result = tracer.trace(Packet.from_params(base))
    assert (result.verdict, result.reject_with) == ("reject", "icmp-admin-prohibited")
    assert result.to_dict()["reject_with"] == "icmp-admin-prohibited"
    v6 = tracer.trace(Packet.from_params({**base, "source": "2001:2::9", "destination": "::1"}))
    assert "rejected with icmp6-adm-prohibited" in v6.notes
    default = Tracer(compiled(reject()).program).trace(Packet.from_params(base))
    assert default.reject_with == "icmp-port-unreachable"
    accepted = tracer.trace(Packet.from_params({**base, "dport": "23"}))
    assert accepted.reject_with is None and "reject_with" not in accepted.to_dict()


def test_written_back_only_when_set():
    parsed = PolicyDocument.from_dict(doc(reject(reject_with="tcp-reset"), reject()))
    first, second = parsed.rulesets[0].rules
    assert rule_dict(first)["reject_with"] == "tcp-reset"
    assert "reject_with" not in rule_dict(second)
