"""`--ctstate DNAT` / `--ctorigdstport` import as the document's `dnat` state (exact: no
widening to straight connections), and ufw's `-m hl --hl-eq 255` on neighbour discovery
is left out as redundant (the receiver drops those with another hop limit)."""

from __future__ import annotations

from compiler import PolicyDocument
from rules.onboarding import translate_iptables_save

NAT = """*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 8081 -j DNAT --to-destination 198.18.7.2:80
{more}COMMIT
"""
FILTER = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
{rules}COMMIT
"""


def _import(rules: str, more_nat: str = ""):
    result = translate_iptables_save(NAT.format(more=more_nat) + FILTER.format(rules=rules))
    PolicyDocument.from_dict(result.document)
    forward = [
        r
        for r in result.document["rulesets"][0]["rules"]
        if r["chain"] == "forward"
        and "policy of" not in r["comment"]
        and r.get("sources") != ["::/0"]  # IPv6 kept open
    ]
    return result, forward


def test_ctstate_dnat_with_other_states_becomes_two_rules():
    result, forward = _import(
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT\n"
    )
    assert [(r["action"], r.get("states")) for r in forward] == [
        ("accept", ["established", "related"]),
        ("accept", ["dnat"]),
    ]
    assert "destinations" not in forward[1]  # not widened to the DNAT's target
    assert result.losses() == [] and result.notes == []


def test_ctstate_dnat_alone_keeps_the_lines_matches_and_reject():
    _, forward = _import(
        "-A FORWARD -i eth0 -p tcp -m conntrack --ctstate DNAT -j REJECT --reject-with tcp-reset\n"
    )
    assert [(r["action"], r["states"], r["in_interface"], r["protocol"]) for r in forward] == [
        ("reject", ["dnat"], "eth0", "tcp")
    ]
    assert forward[0]["reject_with"] == "tcp-reset"


def test_ctorigdstport_with_the_only_dnat_there_is_exact():
    rule = (
        "-A FORWARD -d 198.18.7.2/32 -p tcp -m tcp --dport 80 "
        "-m conntrack --ctorigdstport 8081 -j ACCEPT\n"
    )
    result, forward = _import(rule)
    assert [(r["destinations"], r["dports"], r["states"]) for r in forward] == [
        (["198.18.7.2"], ["80"], ["dnat"])
    ]
    assert result.losses() == []
    assert [n.impact for n in result.notes] == ["verdict-neutral"]


def test_ctorigdstport_wider_when_another_dnat_reaches_the_same_port():
    rule = (
        "-A FORWARD -d 198.18.7.2/32 -p tcp -m tcp --dport 80 "
        "-m conntrack --ctorigdstport 8081 -j ACCEPT\n"
    )
    other = "-A PREROUTING -p tcp -m tcp --dport 9090 -j DNAT --to-destination 198.18.7.2:80\n"
    result, forward = _import(rule, other)
    assert [r["states"] for r in forward] == [["dnat"]]
    assert [(s.line, s.impact) for s in result.losses()] == [(10, "more permissive")]
    assert "translated wider" in result.losses()[0].reason


UFW6 = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m hl --hl-eq 255 -j ACCEPT
-A INPUT -p ipv6-icmp -m hl --hl-eq 255 -m icmp6 --icmpv6-type router-advertisement -j ACCEPT
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 148 -m hl --hl-eq 255 -j ACCEPT
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 128 -m hl --hl-eq 255 -j ACCEPT
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m hl --hl-lt 255 -j DROP
COMMIT
"""


def test_hop_limit_255_on_neighbour_discovery_is_left_out_with_a_note():
    result = translate_iptables_save(UFW6, family=6)
    rules = [r for r in result.document["rulesets"][0]["rules"] if "policy of" not in r["comment"]]
    assert [r["icmp_type"] for r in rules] == [
        "neighbour-solicitation",
        "router-advertisement",
        148,
    ]
    assert sorted(n.line for n in result.notes) == [5, 6, 7]
    assert all(n.impact == "verdict-neutral" for n in result.notes)
    # echo request (128) is not neighbour discovery; --hl-lt is no hop-limit-255 test
    assert sorted(s.line for s in result.losses()) == [8, 9]
