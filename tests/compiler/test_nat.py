"""The nat table (compiler/lower/nat.py): each NAT rule in the families it can apply to,
in its chain, with its target; disabled rules left out."""

from __future__ import annotations

from compiler import CompileOptions, PolicyDocument
from compiler.ir import DNAT, MASQUERADE, SNAT, RuleInfo
from compiler.lower import Expander, lower_device
from compiler.lower.nat import nat_table
from compiler.resolve import Resolver

from . import cases
from .cases import compile_case


def tables() -> tuple[dict, dict, dict[str, RuleInfo]]:
    doc = PolicyDocument.from_dict(cases.nat())
    resolver, expander = Resolver(doc), Expander(CompileOptions())
    infos: dict[str, RuleInfo] = {}
    rulesets = doc.device_rulesets(doc.device("gw-1"))
    v4 = nat_table(rulesets, 4, resolver, expander, infos)
    v6 = nat_table(rulesets, 6, resolver, expander, infos)
    return v4.chains, v6.chains, infos


def summary(chains: dict) -> list[tuple]:
    return [
        (name, r.target, r.proto, r.dports, r.arg, r.in_iface, r.out_iface)
        for name, chain in chains.items()
        for r in chain.rules
    ]


def test_each_rule_lands_in_the_families_its_addresses_allow():
    v4, v6, _ = tables()
    assert summary(v4) == [
        (
            "RPT-PREROUTING",
            DNAT,
            "tcp",
            ((80, 80), (8080, 8080)),
            "198.18.50.10:8000",
            "eth0",
            None,
        ),
        ("RPT-POSTROUTING", SNAT, None, None, "198.18.51.1", None, "eth0"),
    ]
    assert summary(v6) == [
        ("RPT-OUTPUT", DNAT, "udp", ((53, 53),), "[2001:2:0:50::53]:5353", None, None),
        ("RPT-POSTROUTING", MASQUERADE, None, None, None, None, "eth0"),
    ]


def test_chains_come_in_hook_order_with_one_jump_each():
    doc = PolicyDocument.from_dict(cases.nat())
    rulesets = doc.device_rulesets(doc.device("gw-1"))
    table = nat_table(rulesets, 6, Resolver(doc), Expander(CompileOptions()), {})
    assert list(table.chains) == ["RPT-OUTPUT", "RPT-POSTROUTING"]
    assert {k: [r.arg for r in v] for k, v in table.jumps.items()} == {
        "OUTPUT": ["RPT-OUTPUT"],
        "POSTROUTING": ["RPT-POSTROUTING"],
    }


def test_disabled_rules_are_left_out_and_the_others_indexed_as_nat():
    _, _, infos = tables()
    assert sorted(i.position for i in infos.values()) == [1, 2, 3, 4]
    assert {i.table for i in infos.values()} == {"nat"}


def test_management_exemption_opens_prerouting_and_output_only():
    data = cases.nat()
    data["devices"][0]["management_sources"] = ["198.18.60.0/24", "2001:2:0:60::/64"]
    doc = PolicyDocument.from_dict(data)
    program = lower_device(doc, "gw-1", CompileOptions(), cases.NOW)
    for family in (4, 6):
        chains = program.tables[(family, "nat")].chains
        for name, chain in chains.items():
            exempt = [r for r in chain.rules if r.tag == "rpt:sys:mgmt"]
            if name == "RPT-POSTROUTING":
                assert exempt == []
            else:  # first, before every NAT rule
                assert chain.rules[: len(exempt)] == exempt and len(exempt) == 1
                assert (exempt[0].target, exempt[0].dst_type) == ("RETURN", "LOCAL")
    v4 = compile_case("nat").iptables_v4  # no management sources: nothing added
    assert "rpt:sys:mgmt" not in v4.split("*nat")[1]
