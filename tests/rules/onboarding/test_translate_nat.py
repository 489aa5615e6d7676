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
    assert nat == [
        {
            "type": "dnat",
            "chain": "prerouting",
            "in_interface": "eth0",
            "protocol": "tcp",
            "dports": ["8080"],
            "sources": ["0.0.0.0/0"],
            "to": "198.18.1.10:80",
            "comment": "iptables-save line 7",
        },
        {
            "type": "dnat",
            "chain": "prerouting",
            "protocol": "udp",
            "destinations": ["198.18.0.2"],
            "dports": ["53"],
            "to": "198.18.1.53",
            "comment": "iptables-save line 8",
        },
        {
            "type": "dnat",
            "chain": "output",
            "protocol": "tcp",
            "dports": ["2525"],
            "sources": ["0.0.0.0/0"],
            "to": "198.18.1.25:25",
            "comment": "iptables-save line 9",
        },
        {
            "type": "masquerade",
            "chain": "postrouting",
            "out_interface": "eth0",
            "sources": ["198.18.1.0/24"],
            "comment": "iptables-save line 10",
        },
        {
            "type": "snat",
            "chain": "postrouting",
            "out_interface": "eth0",
            "sources": ["198.18.2.0/24"],
            "to": "198.18.0.2",
            "comment": "iptables-save line 11",
        },
    ]
    assert result.nat_translated == {7: 0, 8: 1, 9: 2, 10: 3, 11: 4}
    reasons = {s.line: (s.reason, s.impact) for s in result.skipped}
    assert reasons[12] == (
        "nat table: target REDIRECT in the nat table has no equivalent (DNAT, SNAT, MASQUERADE)",
        "more restrictive",
    )
    assert "negated address" in reasons[13][0] and reasons[13][1] == "more restrictive"
    assert "target fwd" in reasons[14][0]
    assert "chain fwd of the nat table" in reasons[15][0]
    assert result.to_dict()["nat_translated"]["7"] == 0
    assert_every_line_accounted(result, NAT)
