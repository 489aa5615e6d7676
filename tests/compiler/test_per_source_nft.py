"""`rate_limit_per_source` on native nft: one dynamic set per policy rule and family (its
LOG twin's apart) that every kernel rule of the rule updates, so a source has one bucket
in the whole rule as with hashlimit's table name (the former per-kernel-rule meters let a
source through once per kernel rule)."""

from __future__ import annotations

import re

from compiler import PolicyDocument, compile_device
from compiler import per_source as PS
from compiler.ir import ACCEPT, Chain, Program, Rule, Table
from compiler.render_nft import render_nft, render_per_source_sets
from compiler.render_nft import render_rule as render_nft_rule
from rampart_agent.bundle import check_nft_script
from tests.support.netns import namespace, needs_netns

from . import cases

RID = "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1"


def script(**limit) -> str:
    """One input rule with two destination networks per family (two kernel rules each)
    that logs (a LOG twin per kernel rule)."""
    rule = {
        "id": RID,
        "chain": "input",
        "action": "accept",
        "protocol": "udp",
        "dports": ["53"],
        "destinations": ["198.18.0.0/24", "198.18.2.0/24", "2001:2::/64", "2001:2:1::/64"],
        "rate_limit_per_source": {"rate": "6/minute", "burst": 3} | limit,
        "log": True,
    }
    doc = {
        "version": 1,
        "rulesets": [{"name": "rs", "rules": [rule]}],
        "devices": [{"name": "d", "rulesets": ["rs"]}],
    }
    return render_nft(compile_device(PolicyDocument.from_dict(doc), "d", now=cases.NOW).program)


def test_every_kernel_rule_of_a_rule_updates_one_set_per_family():
    text = script()
    base = PS.nft_set_name(PS.bucket_name(RID, PS.PerSourceLimit("6/minute", 3)), 4)[:-2]
    sets = re.findall(r"^\tset (rps\S+) \{ (.*) \}$", text, re.M)
    assert sets == [
        (f"{base}-4", "type ipv4_addr; size 65535; flags dynamic,timeout; timeout 60s;"),
        (f"{base}-6", "type ipv6_addr; size 65535; flags dynamic,timeout; timeout 60s;"),
        (f"{base}l-4", "type ipv4_addr; size 65535; flags dynamic,timeout; timeout 60s;"),
        (f"{base}l-6", "type ipv6_addr; size 65535; flags dynamic,timeout; timeout 60s;"),
    ]
    for family, ip in ((4, "ip"), (6, "ip6")):
        uses = re.findall(
            rf"update @({base}l?-{family}) \{{ {ip} saddr timeout 60s limit rate 6/minute "
            r"burst 3 packets \} counter (\w+)",
            text,
        )
        # two destinations: two kernel rules, each with its LOG twin, one set each
        assert uses == [(f"{base}l-{family}", "log"), (f"{base}-{family}", "accept")] * 2
    assert "meter" not in text


def test_the_set_is_never_a_lookup_set_nor_a_hashlimit_name():
    bucket = PS.bucket_name(RID, PS.PerSourceLimit("6/minute", 3))
    for family in (4, 6):
        name = PS.nft_set_name(bucket + "l", family)
        assert name.startswith("rps") and not name.startswith("rpt")
        assert name[3:].startswith(bucket[3:])


def test_a_prefix_keys_the_bucket_by_network_and_the_timeout_follows_the_unit():
    text = script(rate="100/hour", burst=20, ipv4_prefix=24, ipv6_prefix=64)
    assert "ip saddr & 255.255.255.0 timeout 3600s limit rate 100/hour burst 20 packets" in text
    assert "ip6 saddr & ffff:ffff:ffff:ffff:: timeout 3600s limit rate 100/hour" in text
    assert text.count("flags dynamic,timeout; timeout 3600s;") == 4


def test_the_default_burst_is_said_and_the_rule_renders_alone():
    rule = Rule(ACCEPT, "t", proto="tcp", dports=((22, 22),))
    rule.per_source = (PS.PerSourceLimit("10/second"), "rptabc")
    assert render_nft_rule(rule, 6, "filter") == (
        "tcp dport 22 update @rpsabc-6 { ip6 saddr timeout 1s limit rate 10/second burst 5 "
        'packets } counter accept comment "t"'
    )
    chain = Chain("RPT-INPUT", [rule, rule])
    program = Program("d", {(6, "filter"): Table(6, "filter", chains={chain.name: chain})}, {}, {})
    assert render_per_source_sets(program) == [
        "\tset rpsabc-6 { type ipv6_addr; size 65535; flags dynamic,timeout; timeout 1s; }"
    ]


@needs_netns[0]
@needs_netns[1]
def test_the_script_passes_the_agent_check_nft_c_and_loads_twice():
    """With prefixes on both families: the agent's script check, `nft -c`, two loads (a
    reload recreates the sets), and the kernel lists the rules with the shared sets."""
    text = script(rate="100/hour", burst=20, ipv4_prefix=24, ipv6_prefix=64)
    check_nft_script(text)
    with namespace("nftps") as ns:
        check = ns.run("nft", "-c", "-f", "-", input=text, check=False)
        assert check.returncode == 0, check.stderr
        for _ in range(2):
            ns.run("nft", "-f", "-", input=text)
        # the former meter's kernel program: a dynset `update` (each packet restarts the
        # entry's timeout) with the limit as the element's expression
        debug = ns.run("nft", "--debug=netlink", "-c", "-f", "-", input=text)
        ops = re.findall(
            r"\[ dynset (\w+) reg_key \d+ set (rps\S+) timeout (\d+)ms expr \[ limit",
            debug.stdout + debug.stderr,
        )
        assert len(ops) == 8 and {(op, ms) for op, _, ms in ops} == {("update", "3600000")}
        listed = ns.run("nft", "list", "table", "inet", "rampart").stdout
        assert listed.count("flags dynamic,timeout") == 4
        assert listed.count("update @rps") == 8 and "meter" not in listed
        assert "ip6 saddr & ffff:ffff:ffff:ffff:: timeout 1h limit rate 100/hour" in listed
