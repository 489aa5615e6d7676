"""Hostile or hand-edited `nft -j list ruleset` JSON: a shape nft never writes (a missing
key, a string where an object goes) is reported with its item's position, never a crash
(through the API: a 200 with the report, never a 500)."""

from __future__ import annotations

import json

import pytest

from rules.onboarding import translate_iptables_save

from .test_translate_nft import accounted

TABLE = {"table": {"family": "inet", "name": "f"}}
INPUT = {
    "chain": {
        "family": "inet",
        "table": "f",
        "name": "input",
        "type": "filter",
        "hook": "input",
        "prio": 0,
        "policy": "drop",
    }
}
ACCEPT = {"rule": {"family": "inet", "table": "f", "chain": "input", "expr": [{"accept": None}]}}
SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}


def _rule(expr: object) -> dict:
    return {"rule": {"family": "inet", "table": "f", "chain": "input", "expr": expr}}


def _base_chain(**changes: object) -> dict:
    return {"chain": {**INPUT["chain"], **changes}}


MALFORMED = {
    "table without name": [{"table": {"family": "inet"}}],
    "chain without table": [{"chain": {"family": "inet", "name": "x"}}],
    "rule without chain": [{"rule": {"family": "inet", "table": "f"}}],
    "table body a list": [{"table": ["f"]}],
    "family a list": [{"table": {"family": ["inet"], "name": "f"}}],
    "hook a list": [_base_chain(hook=["input"])],
    "prio an object": [_base_chain(prio={"x": 1})],
    "expr a string": [_rule("accept")],
    "statement a string": [_rule(["accept"])],
    "match without left": [_rule([{"match": {"op": "=="}}, {"accept": None}])],
    "match a string": [_rule([{"match": "x"}, {"accept": None}])],
    "prefix without len": [
        _rule([{"match": {"op": "==", "left": SADDR, "right": {"prefix": {"addr": "1.2.3.4"}}}}])
    ],
    "jump a string": [_rule([{"jump": "nowhere"}])],
    "reject a string": [_rule([{"reject": "x"}])],
    "limit a string": [_rule([{"limit": "x"}, {"accept": None}])],
    "log a string": [_rule([{"log": "x"}, {"accept": None}])],
    "dnat a string": [_rule([{"dnat": "x"}])],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_item_is_reported_not_a_crash(name):
    items = [TABLE, INPUT, ACCEPT, *MALFORMED[name]]
    text = json.dumps({"nftables": items})
    result = translate_iptables_save(text)
    accounted(result, text)
    bad = len(items)  # the malformed item is last
    assert bad in {s.line for s in result.skipped}, result.skipped
    assert 3 in result.translated  # the well-formed rule still is


@pytest.mark.django_db
def test_malformed_json_through_the_api_is_not_a_500(api):
    items = [TABLE, INPUT, ACCEPT, *(item for case in MALFORMED.values() for item in case)]
    res = api.post(
        "/api/v1/policy/from-iptables-save/",
        data=json.dumps({"nftables": items}),
        content_type="application/json",
    )
    assert res.status_code == 200, res.content[:500]
    assert len(res.json()["skipped"]) >= len(MALFORMED)
