"""`rate_limit_per_source`: a token bucket per source address (hashlimit, mode srcip);
parsed with the kernel's bounds, compiled, traced (assumed within the limit, like
`rate_limit`), written back."""

from __future__ import annotations

import pytest

from compiler import Packet, PolicyDocument, Tracer, compile_device
from compiler import per_source as PS
from compiler.document.serialise import rule_dict
from compiler.errors import DocumentError
from compiler.lower.tags import rule_tag, rule_tagger
from compiler.validate import rule_errors

from . import cases

RID = "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1"


def doc(*rules: dict) -> dict:
    return {
        "version": 1,
        "rulesets": [{"name": "rs", "rules": list(rules)}],
        "devices": [{"name": "d", "rulesets": ["rs"]}],
    }


def ssh(**kw) -> dict:
    return {
        "id": RID,
        "chain": "input",
        "action": "accept",
        "protocol": "tcp",
        "dports": ["22"],
        "rate_limit_per_source": {"rate": "6/minute", "burst": 3},
        **kw,
    }


def compiled(*rules: dict):
    return compile_device(PolicyDocument.from_dict(doc(*rules)), "d", now=cases.NOW)


def lines(text: str, word: str = "hashlimit") -> list[str]:
    return [line for line in text.splitlines() if word in line]


def test_rendered_per_family_as_iptables_save_prints_it():
    bundle = compiled(ssh(rate_limit_per_source={"rate": "120/hour", "ipv4_prefix": 24}))
    name = PS.bucket_name(RID, PS.PerSourceLimit("120/hour", None, 24, None))
    assert len(name) <= PS.NAME_MAX
    (v4,) = lines(bundle.iptables_v4)
    assert (
        "-m hashlimit --hashlimit-upto 2/min --hashlimit-burst 5 --hashlimit-mode srcip "
        f"--hashlimit-name {name} --hashlimit-srcmask 24 -m comment" in v4
    )
    (v6,) = lines(bundle.iptables_v6)
    assert "--hashlimit-srcmask" not in v6 and f"--hashlimit-name {name} -m comment" in v6


def test_log_twin_counts_in_its_own_bucket():
    bundle = compiled(ssh(log=True))
    log, accept = lines(bundle.iptables_v4)
    assert "-j LOG" in log and accept.endswith("-j ACCEPT")
    name = PS.bucket_name(RID, PS.PerSourceLimit("6/minute", 3))
    assert f"--hashlimit-name {name}l " in log and f"--hashlimit-name {name} " in accept


def test_a_changed_limit_gets_a_new_bucket_and_tag():
    a, b = PS.PerSourceLimit("6/minute", 3), PS.PerSourceLimit("6/minute", 4)
    assert PS.bucket_name(RID, a) != PS.bucket_name(RID, b)
    doc_a = PolicyDocument.from_dict(doc(ssh()))
    doc_b = PolicyDocument.from_dict(doc(ssh(rate_limit_per_source={"rate": "6/minute"})))
    plain = PolicyDocument.from_dict(doc(ssh(rate_limit_per_source=None)))
    rules = [d.rulesets[0].rules[0] for d in (doc_a, doc_b, plain)]
    tags = {rule_tag(RID, r) for r in rules}
    assert len(tags) == 3
    assert [rule_tagger()(RID, r) for r in rules] == [rule_tag(RID, r) for r in rules]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"rate": "0/second"}, "use N/second"),
        ({"rate": "1000001/second"}, "at most 1000000/second"),
        ({"rate": "1/day", "burst": 10}, "interval × burst at most 111848 s"),
        ({"rate": "1/second", "burst": 1000001}, "burst must be a whole number 1-1000000"),
        ({"rate": "1/second", "ipv4_prefix": 33}, "ipv4_prefix must be a whole number 1-32"),
        ({"rate": "1/second", "ipv6_prefix": 0}, "ipv6_prefix must be a whole number 1-128"),
        ({"rate": "1/second", "mode": "dstip"}, "unknown key 'mode'"),
        ("3/minute", "must be a mapping"),
    ],
)
def test_kernel_bounds_are_field_errors(given, says):
    errors = rule_errors(ssh(rate_limit_per_source=given))
    assert any(says in m for m in errors["rate_limit_per_source"]), errors
    with pytest.raises(DocumentError):
        PolicyDocument.from_dict(doc(ssh(rate_limit_per_source=given)))


def test_bounds_that_load():
    # the largest that load everywhere (HZ 300): 1/day with burst 1, 1/hour with 31
    PS.parse({"rate": "1/day", "burst": 1})
    PS.parse({"rate": "1/hour", "burst": 31})
    with pytest.raises(ValueError, match="at most 31"):
        PS.parse({"rate": "1/hour", "burst": 32})
    with pytest.raises(ValueError, match="use a burst of at most 1$"):
        PS.parse({"rate": "1/day", "burst": 2})
    PS.parse({"rate": "1000000/second", "burst": 1000000})


def test_traced_as_within_the_limit():
    tracer = Tracer(compiled(ssh()).program)
    packet = {"protocol": "tcp", "dport": "22", "source": "198.18.0.9", "destination": "198.18.0.1"}
    result = tracer.trace(Packet.from_params(packet))
    assert result.verdict == "accept"
    assert any("rate limited per source (6/minute)" in n for n in result.notes)


def test_written_back_and_round_trips():
    parsed = PolicyDocument.from_dict(doc(ssh()))
    rule = parsed.rulesets[0].rules[0]
    assert rule.rate_limit_per_source == PS.PerSourceLimit("6/minute", 3)
    assert rule_dict(rule)["rate_limit_per_source"] == {"rate": "6/minute", "burst": 3}
    assert PolicyDocument.from_dict(parsed.to_dict()) == parsed
    old = PolicyDocument.from_dict(doc(ssh(rate_limit_per_source=None)))
    assert "rate_limit_per_source" not in rule_dict(old.rulesets[0].rules[0])
