"""The `dnat` state (`states: [dnat]`): packets of a connection the nat table translated
(iptables `--ctstate DNAT`, nft `ct status dnat`) — a port forward's traffic, not a
connection made straight to the translated address."""

from __future__ import annotations

import pytest

from compiler import DocumentError, PolicyDocument, check_document, compile_device, with_nft
from compiler.validate import rule_errors

from . import cases
from .test_tracer_nat import BACKEND, CLIENT, ROUTER, dnat, run, tracer

FORWARDED = {"chain": "forward", "action": "accept", "protocol": "tcp", "dports": ["80"]}
FORWARDED = {**FORWARDED, "destinations": [BACKEND], "states": ["dnat"]}


def _doc(rule: dict) -> dict:
    return {
        "version": 1,
        "rulesets": [{"name": "gw", "rules": [rule]}],
        "devices": [{"name": "gw-1", "rulesets": ["gw"]}],
    }


def test_dnat_alone_parses_and_with_another_state_is_refused():
    PolicyDocument.from_dict(_doc(FORWARDED))
    with pytest.raises(DocumentError) as info:
        PolicyDocument.from_dict(_doc({**FORWARDED, "states": ["established", "dnat"]}))
    assert [e.path for e in info.value.errors] == ["rulesets[gw].rules[0].states"]
    assert "write two rules" in info.value.errors[0].message
    assert rule_errors({**FORWARDED, "states": ["dnat", "new"]})
    assert not rule_errors(FORWARDED)


def test_rendered_as_conntrack_dnat_and_ct_status():
    bundle = compile_device(PolicyDocument.from_dict(_doc(FORWARDED)), "gw-1", now=cases.NOW)
    lines = [line for line in bundle.iptables_v4.splitlines() if "DNAT" in line]
    assert len(lines) == 1 and "-m conntrack --ctstate DNAT -m comment" in lines[0]
    assert "--ctstate DNAT" not in bundle.iptables_v6  # the rule is IPv4's
    nft = [line for line in with_nft(bundle).nft.splitlines() if "ct status dnat" in line]
    assert len(nft) == 1 and "ct state" not in nft[0]


def test_tracer_a_forwarded_connection_has_the_dnat_state_a_straight_one_not():
    t = tracer(
        [dnat("8080", f"{BACKEND}:80")],
        [FORWARDED],
        default_policy={"input": "drop", "forward": "drop"},
    )
    forwarded = run(t, destination=ROUTER, dport="8080")
    assert forwarded.verdict == "accept" and [s.target for s in forwarded.nat] == ["DNAT"]
    straight = run(t, chain="forward", destination=BACKEND, dport="80")
    assert straight.verdict == "drop" and straight.nat == []
    assert run(t, destination=ROUTER, dport="8081").verdict == "drop"  # not translated


def test_tracer_a_redirect_sets_the_dnat_state_too():
    redirect = {"type": "redirect", "protocol": "tcp", "dports": ["8080"], "to": "80"}
    local = {"chain": "input", "action": "accept", "protocol": "tcp", "dports": ["80"]}
    t = tracer([redirect], [{**local, "states": ["dnat"]}], default_policy={"input": "drop"})
    assert run(t, destination=ROUTER, dport="8080").verdict == "accept"
    assert run(t, destination=ROUTER, dport="80", source=CLIENT).verdict == "drop"


def test_analysis_knows_dnat_packets_are_also_in_a_state():
    """A drop for every state shadows a later `dnat` rule; a `dnat` accept does not make a
    rule after a drop of all states redundant (regions.py: state x translated or not)."""
    drop_all = {"chain": "forward", "action": "drop"}
    doc = _doc(FORWARDED)
    doc["rulesets"][0]["rules"] += [drop_all, dict(FORWARDED)]
    found = check_document(doc, now=cases.NOW).warnings
    assert [(f.kind, [r["position"] for r in f.rules]) for f in found] == [("redundant", [3, 1])]
    doc = _doc({**FORWARDED, "states": ["new"]})
    doc["rulesets"][0]["rules"].append(dict(FORWARDED))  # dnat: also established ones
    assert check_document(doc, now=cases.NOW).warnings == []
