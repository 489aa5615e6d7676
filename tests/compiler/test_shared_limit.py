"""`rate_limit`: one token bucket per policy rule and family, shared by its kernel rules
(compiler/shared_limit.py): the name, the iptables spelling as iptables-save prints it
back, the nft `limit` objects, and what keeps a bucket per kernel rule (the default log
limit)."""

from __future__ import annotations

import re

import pytest

from compiler import CompileOptions, PolicyDocument, compile_device
from compiler import shared_limit as SL
from compiler.errors import DocumentError
from compiler.ir import ACCEPT, LOG, Chain, Program, Rule, Table
from compiler.per_source import NAME_MAX, SPAN_MAX_US
from compiler.render_iptables import render_rule
from compiler.render_nft import render_limits, render_nft
from compiler.render_nft import render_rule as render_nft_rule
from compiler.values import HASHLIMIT_SPAN_MAX_US

from . import cases

RID = "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1"


def bundle(options: CompileOptions | None = None, **rule):
    """One input rule with two source networks per family: two kernel rules each."""
    doc = {
        "version": 1,
        "rulesets": [
            {
                "name": "rs",
                "rules": [
                    {
                        "id": RID,
                        "chain": "input",
                        "action": "accept",
                        "protocol": "udp",
                        "dports": ["53"],
                        "sources": [
                            "198.18.0.0/24",
                            "198.18.2.0/24",
                            "2001:2::/64",
                            "2001:2:1::/64",
                        ],
                    }
                    | rule
                ],
            }
        ],
        "devices": [{"name": "d", "rulesets": ["rs"]}],
    }
    return compile_device(PolicyDocument.from_dict(doc), "d", options=options, now=cases.NOW)


def rule_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("-A RPT-I-")]


def names(lines: list[str]) -> list[str]:
    return [re.search(r"--hashlimit-name (\S+)", line).group(1) for line in lines]  # type: ignore[union-attr]


def test_the_kernel_rules_of_a_rule_share_one_hashlimit_table():
    b = bundle(rate_limit="10/second", burst=20)
    for text in (b.iptables_v4, b.iptables_v6):
        lines = rule_lines(text)
        assert len(lines) == 2 and not any("-m limit" in line for line in lines)
        assert all(
            " -m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 20 --hashlimit-name " in line
            and "--hashlimit-mode" not in line
            for line in lines
        )
        assert len(set(names(lines))) == 1
    # xt_hashlimit keeps a table per family: one name serves both
    assert names(rule_lines(b.iptables_v4)) == names(rule_lines(b.iptables_v6))


def test_the_name_is_per_rule_and_limit_and_fits_the_kernel():
    name = SL.bucket_name(RID, "10/second", 20)
    assert re.fullmatch(r"rpr[0-9a-f]{11}", name)
    assert len(SL.bucket_name(RID, "10/second", 20, log=True)) <= NAME_MAX
    assert SL.bucket_name(RID, "10/second", None) == SL.bucket_name(RID, "10/second", 5)
    assert name != SL.bucket_name(RID, "10/second", 21)  # a changed limit starts full
    assert name != SL.bucket_name(RID, "11/second", 20)
    assert name != SL.bucket_name("another", "10/second", 20)


@pytest.mark.parametrize(
    ("rate", "burst", "spelled"),
    [
        # refilling the burst takes at most one unit: iptables' default expiry, not printed
        ("10/second", 5, "--hashlimit-upto 10/sec --hashlimit-burst 5 --hashlimit-name n"),
        ("1/day", 1, "--hashlimit-upto 1/day --hashlimit-burst 1 --hashlimit-name n"),
        (
            "10000/second",
            10000,
            "--hashlimit-upto 10000/sec --hashlimit-burst 10000 --hashlimit-name n",
        ),
        # longer: the expiry is the refill time (31 h), so an expired bucket was full
        (
            "1/hour",
            31,
            "--hashlimit-upto 1/hour --hashlimit-burst 31 --hashlimit-name n "
            "--hashlimit-htable-expire 111600000",
        ),
        # printed in another unit (120/hour is 2/min): its default is that unit's
        ("120/hour", 2, "--hashlimit-upto 2/min --hashlimit-burst 2 --hashlimit-name n"),
        (
            "120/hour",
            5,
            "--hashlimit-upto 2/min --hashlimit-burst 5 --hashlimit-name n "
            "--hashlimit-htable-expire 150000",
        ),
        (
            "3/second",
            7,
            "--hashlimit-upto 3/sec --hashlimit-burst 7 --hashlimit-name n "
            "--hashlimit-htable-expire 2334",
        ),
    ],
)
def test_the_spelling_is_what_iptables_save_prints(rate, burst, spelled):
    assert SL.hashlimit_match(rate, burst, "n") == " -m hashlimit " + spelled


def test_an_expired_bucket_is_always_a_full_one():
    for rate, burst in (("3/second", 7), ("1/hour", 31), ("7/minute", 10000), ("1/day", 1)):
        refill_us = SL.interval_us(rate) * burst
        assert SL.expire_ms(rate, burst) * 1000 >= refill_us
        assert SL.expire_ms(rate, burst) * 1000 <= max(refill_us + 1000, 86_400_000_000)


def test_a_logging_rule_logs_in_a_bucket_of_its_own():
    """The LOG twin has the same settings and sees the same packets: it decides as the
    verdict does without taking the verdict's tokens."""
    b = bundle(rate_limit="3/second", burst=7, log=True)
    lines = rule_lines(b.iptables_v4)
    logs = [line for line in lines if "-j LOG" in line]
    verdicts = [line for line in lines if "-j ACCEPT" in line]
    assert len(logs) == len(verdicts) == 2
    assert {n for n in names(logs)} == {names(verdicts)[0] + "l"}
    assert all("--hashlimit-upto 3/sec --hashlimit-burst 7" in line for line in logs)


def test_the_default_log_limit_keeps_a_bucket_per_kernel_rule():
    """Rules without rate_limit are not changed: their LOG rules keep `-m limit`."""
    lines = rule_lines(bundle(log=True).iptables_v4)
    assert [("-m limit --limit 10/min" in line, "hashlimit" in line) for line in lines] == [
        (True, False),
        (False, False),
    ] * 2
    nft = render_nft(bundle(log=True).program)
    assert "limit rate 10/minute burst 5 packets" in nft and "limit name" not in nft


def test_nft_names_one_limit_object_per_rule_and_family():
    b = bundle(rate_limit="10/second", burst=20, log=True)
    script = render_nft(b.program)
    base = SL.bucket_name(RID, "10/second", 20)
    objects = re.findall(r"^\tlimit (\S+) \{ (.*) \}$", script, re.M)
    assert objects == [
        (f"{base}-4", "rate 10/second burst 20 packets"),
        (f"{base}-6", "rate 10/second burst 20 packets"),
        (f"{base}l-4", "rate 10/second burst 20 packets"),
        (f"{base}l-6", "rate 10/second burst 20 packets"),
    ]
    for family in (4, 6):
        uses = re.findall(rf'limit name "({base}l?-{family})" counter (\w+)', script)
        assert uses == [(f"{base}l-{family}", "log"), (f"{base}-{family}", "accept")] * 2
    assert "limit rate" not in script


def test_renderers_keep_an_inline_limit_without_a_shared_bucket():
    inline = Rule(LOG, "t", proto="tcp", dports=((22, 22),), limit="10/minute", arg="p ")
    shared = Rule(ACCEPT, "t", proto="tcp", dports=((22, 22),), limit="10/minute")
    shared.shared_limit = "rprabc"
    assert " -m limit --limit 10/min " in render_rule("C", inline, 4)
    assert " -m hashlimit --hashlimit-upto 10/min --hashlimit-burst 5 --hashlimit-name rprabc " in (
        render_rule("C", shared, 4)
    )
    assert " limit rate 10/minute burst 5 packets " in render_nft_rule(inline, 4, "filter")
    assert ' limit name "rprabc-6" ' in render_nft_rule(shared, 6, "filter")
    chain = Chain("RPT-INPUT", [inline, shared])
    program = Program("d", {(6, "filter"): Table(6, "filter", chains={chain.name: chain})}, {}, {})
    assert render_limits(program) == ["\tlimit rprabc-6 { rate 10/minute burst 5 packets }"]


def test_every_accepted_rate_and_burst_fits_hashlimit():
    """The document's bounds (values.check_limit_burst) never overflow hashlimit's
    credits, whose span bound is a little under xt_limit's."""
    with pytest.raises(DocumentError, match="use a burst of at most 900"):
        bundle(rate_limit="29/hour", burst=901)  # 111848.28 s: xt_limit took it
    assert SL.interval_us("29/hour") * 900 <= SPAN_MAX_US
    bundle(rate_limit="29/hour", burst=900)


def test_the_document_bound_is_hashlimit_s():
    assert HASHLIMIT_SPAN_MAX_US == SPAN_MAX_US
