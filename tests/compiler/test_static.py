"""The fixed steps before any rule set (compiler/lower/static.py): loopback, conntrack,
ICMPv6 neighbour discovery, anti-lockout, in that order and only where they apply."""

from __future__ import annotations

import re

from compiler import CompileOptions, PolicyDocument
from compiler.document import Device
from compiler.ir import ACCEPT, DROP
from compiler.lower import ND_TYPES, Expander, fixed_rules, nat_exemption
from compiler.resolve import Resolver

from .cases import compile_case

TAG = re.compile(r'-m comment --comment "([^"]+)"')


def steps(device: Device, chain: str, family: int) -> list:
    doc = PolicyDocument.from_dict({"version": 1})
    return fixed_rules(device, chain, family, Resolver(doc), Expander(CompileOptions()))


def test_evaluation_order_of_the_fixed_steps():
    lines = [
        line
        for line in compile_case("example").iptables_v6.splitlines()
        if line.startswith("-A RPT-INPUT ")
    ]
    tags = [TAG.search(line).group(1) for line in lines]
    order = [
        "rpt:sys:loopback",
        "rpt:sys:conntrack",
        "rpt:sys:icmpv6-nd",
        "rpt:sys:mgmt",
        "rpt:jump",
        "rpt:sys:default",
    ]
    assert [t for i, t in enumerate(tags) if i == 0 or tags[i - 1] != t] == order
    assert "--ctstate RELATED,ESTABLISHED" in lines[1] and "--ctstate INVALID" in lines[2]
    assert lines[-1].endswith("-j DROP")


def test_loopback_conntrack_and_nd_follow_the_device():
    device = Device("d")
    assert [(r.target, r.tag, r.in_iface) for r in steps(device, "input", 4)] == [
        (ACCEPT, "rpt:sys:loopback", "lo"),
        (ACCEPT, "rpt:sys:conntrack", None),
        (DROP, "rpt:sys:conntrack", None),
    ]
    assert steps(device, "output", 4)[0].out_iface == "lo"
    assert all(r.tag != "rpt:sys:loopback" for r in steps(device, "forward", 4))
    v6 = steps(device, "input", 6)
    assert [r.icmp_type for r in v6 if r.tag == "rpt:sys:icmpv6-nd"] == list(ND_TYPES)
    # output defaults to accept: neighbour discovery needs no rule there; never in forward
    assert all(r.tag != "rpt:sys:icmpv6-nd" for r in steps(device, "output", 6))
    assert all(r.tag != "rpt:sys:icmpv6-nd" for r in steps(device, "forward", 6))


def test_a_device_without_loopback_and_state_has_no_fixed_steps():
    device = Device("d", allow_loopback=False, stateful=False, default_input="accept")
    assert steps(device, "input", 4) == [] and steps(device, "input", 6) == []


def test_anti_lockout_opens_ssh_and_the_agent_port_from_management_sources():
    device = Device(
        "d", agent_port=9443, management_sources=("198.18.7.0/24", "2001:2::/64"), stateful=False
    )
    for family, text in ((4, "198.18.7.0/24"), (6, "2001:2::/64")):
        mgmt = [r for r in steps(device, "input", family) if r.tag == "rpt:sys:mgmt"]
        assert len(mgmt) == 1
        rule = mgmt[0]
        assert (rule.target, rule.proto, rule.dports) == (ACCEPT, "tcp", ((22, 22), (9443, 9443)))
        assert [n.text for n in rule.src.nets] == [text]
    assert all(r.tag != "rpt:sys:mgmt" for r in steps(device, "forward", 4))


def test_neighbour_discovery_is_exactly_what_it_needs():
    """Types 133-136 with hop limit 255 (a routed ND message is invalid), in INPUT and OUTPUT
    only; redirect (137) is left to the rule sets."""
    device = Device("d", default_output="drop")
    for chain in ("input", "output"):
        nd = [r for r in steps(device, chain, 6) if r.tag == "rpt:sys:icmpv6-nd"]
        assert [(r.icmp_type, r.hop_limit) for r in nd] == [(t, 255) for t in (133, 134, 135, 136)]
    assert all(r.tag != "rpt:sys:icmpv6-nd" for r in steps(device, "forward", 6))
    line = next(
        line
        for line in compile_case("sets_and_ports").iptables_v6.splitlines()
        if "--icmpv6-type 135" in line and line.startswith("-A RPT-INPUT")
    )
    assert "-m icmp6 --icmpv6-type 135 -m hl --hl-eq 255" in line
    assert "--icmpv6-type 137" not in compile_case("sets_and_ports").iptables_v6


def test_management_traffic_to_the_device_is_exempt_from_nat():
    device = Device("d", agent_port=9443, management_sources=("198.18.7.0/24",))
    doc = PolicyDocument.from_dict({"version": 1})
    (rule,) = nat_exemption(device, 4, Resolver(doc), Expander(CompileOptions()))
    assert (rule.target, rule.tag, rule.dst_type, rule.dports) == (
        "RETURN",
        "rpt:sys:mgmt",
        "LOCAL",
        ((22, 22), (9443, 9443)),
    )
    assert nat_exemption(device, 6, Resolver(doc), Expander(CompileOptions())) == []
    assert nat_exemption(Device("d"), 4, Resolver(doc), Expander(CompileOptions())) == []
