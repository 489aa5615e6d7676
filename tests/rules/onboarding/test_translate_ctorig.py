"""`--ctorigdstport` in the forms iptables-save writes (a port, or a range `LO:HI`) and
one it never writes: read or reported, never a crash (the API's 500)."""

from __future__ import annotations

import pytest

from rules.onboarding import translate_iptables_save

DUMP = """*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 198.18.0.9:8080
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d 198.18.0.9 -p tcp --dport 8080 -m conntrack --ctorigdstport {port} -j ACCEPT
COMMIT
"""
LINE = 9  # the FORWARD rule


def _forward(result) -> list[dict]:
    rules = result.document["rulesets"][0]["rules"]
    return [r for r in rules if r["chain"] == "forward" and r.get("sources") != ["::/0"]]


@pytest.mark.parametrize("port", ["80", "80:90", "70:80"])
def test_port_or_range_the_dnat_translates_from(port):
    result = translate_iptables_save(DUMP.format(port=port))
    accepted = [r for r in _forward(result) if r["action"] == "accept"]
    assert [(r["destinations"], r["dports"]) for r in accepted] == [(["198.18.0.9"], ["8080"])]
    assert LINE in {n.line for n in result.notes}  # left out: said so


@pytest.mark.parametrize("port", ["81:90", "443"])
def test_range_no_dnat_translates_from_matches_nothing(port):
    result = translate_iptables_save(DUMP.format(port=port))
    assert [r["action"] for r in _forward(result)] == ["drop"]


@pytest.mark.parametrize("port", ["1:2:3", "x", "90:80", "70000", "\u00b2"])
def test_malformed_port_is_reported(port):
    result = translate_iptables_save(DUMP.format(port=port))
    assert LINE in {s.line for s in result.skipped}
