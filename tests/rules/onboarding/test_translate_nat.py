"""The administrator's nat table → the rule set's NAT entries (no kernel)."""

from __future__ import annotations

from compiler import PolicyDocument
from rules.onboarding import translate_iptables_save

from .test_translate import assert_every_line_accounted

NAT = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:fwd - [0:0]
-A PREROUTING -i eth0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.1.10:80
-A PREROUTING -d 198.18.0.2/32 -p udp -m udp --dport 53 -j DNAT --to-destination 198.18.1.53
-A OUTPUT -p tcp -m tcp --dport 2525 -j DNAT --to-destination 198.18.1.25:25
-A POSTROUTING -s 198.18.1.0/24 -o eth0 -j MASQUERADE
-A POSTROUTING -s 198.18.2.0/24 -o eth0 -j SNAT --to-source 198.18.0.2
-A PREROUTING -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128
-A PREROUTING ! -s 198.18.0.0/24 -p tcp -m tcp --dport 9000 -j DNAT --to-destination 198.18.1.9
-A PREROUTING -j fwd
-A fwd -p tcp -m tcp --dport 9001 -j DNAT --to-destination 198.18.1.9
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d 198.18.1.10/32 -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
"""


def test_dnat_snat_masquerade_are_imported():
    result = translate_iptables_save(NAT, ruleset="gw")
    PolicyDocument.from_dict(result.document)  # valid
    nat = result.document["rulesets"][0]["nat"]
    by_line = {int(e["comment"].rsplit(" ", 1)[1]): e for e in nat}
    assert [e["type"] for e in nat] == [
        "dnat",
        "dnat",
        "redirect",
        "dnat",
        "dnat",
        "masquerade",
        "snat",
    ]  # by built-in chain: prerouting (line 14's chain inlined), output, postrouting
    assert by_line[7] == {
        "type": "dnat",
        "chain": "prerouting",
        "in_interface": "eth0",
        "protocol": "tcp",
        "dports": ["8080"],
        "sources": ["0.0.0.0/0"],
        "to": "198.18.1.10:80",
        "comment": "iptables-save line 7",
    }
    assert by_line[8] == {
        "type": "dnat",
        "chain": "prerouting",
        "protocol": "udp",
        "destinations": ["198.18.0.2"],
        "dports": ["53"],
        "to": "198.18.1.53",
        "comment": "iptables-save line 8",
    }
    assert by_line[9]["chain"] == "output" and by_line[9]["to"] == "198.18.1.25:25"
    assert by_line[10] == {
        "type": "masquerade",
        "chain": "postrouting",
        "out_interface": "eth0",
        "sources": ["198.18.1.0/24"],
        "comment": "iptables-save line 10",
    }
    assert by_line[11]["type"] == "snat" and by_line[11]["to"] == "198.18.0.2"
    # REDIRECT: to the device itself, on the given port
    assert by_line[12] == {
        "type": "redirect",
        "chain": "prerouting",
        "protocol": "tcp",
        "dports": ["80"],
        "sources": ["0.0.0.0/0"],
        "to": "3128",
        "comment": "iptables-save line 12",
    }
    # a nat-table user chain: inlined where PREROUTING jumps to it
    assert by_line[15]["chain"] == "prerouting" and by_line[15]["dports"] == ["9001"]
    assert result.nat_translated[14] == result.nat_translated[15] == 3
    reasons = {s.line: (s.reason, s.impact) for s in result.skipped}
    assert set(reasons) == {13}
    assert "negated address" in reasons[13][0] and reasons[13][1] == "more restrictive"
    assert result.to_dict()["nat_translated"]["7"] == 0
    assert_every_line_accounted(result, NAT)


def test_nat_user_chains_follow_jumps_and_conditional_returns():
    dump = """\
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:zone - [0:0]
:zone_allow - [0:0]
-A PREROUTING -i eth0 -j zone
-A zone -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.1.10
-A zone -s 198.18.7.0/24 -j RETURN
-A zone -j zone_allow
-A zone_allow -p tcp -m tcp --dport 81 -j DNAT --to-destination 198.18.1.11
COMMIT
"""
    result = translate_iptables_save(dump, ruleset="gw", keep_ipv6_open=False)
    PolicyDocument.from_dict(result.document)
    (entry,) = result.document["rulesets"][0]["nat"]
    # the DNAT before the RETURN: inlined with the jump's interface
    assert (entry["in_interface"], entry["to"], entry["comment"]) == (
        "eth0",
        "198.18.1.10",
        "iptables-save line 7",
    )
    # after the RETURN the rules apply to `! -s 198.18.7.0/24`, which a NAT entry cannot
    # say: reported with its class, not skipped silently (and not the whole chain)
    reasons = {s.line: (s.reason, s.impact) for s in result.skipped}
    assert "negated address" in reasons[10][0] and reasons[10][1] == "more restrictive"
    assert any("conditional RETURN" in n.reason for n in result.notes if n.line == 8)
    assert_every_line_accounted(result, dump)
