"""Where a rate limit stands decides which packets take its tokens. On a jump it is one
bucket at the jump, taken by every packet reaching it, where the document has a bucket per
rule: copied onto the inlined rules it is exact only when one rule comes out that matches
every packet of the jump, otherwise the jump is a loss saying why. In a rule, a match after
the limit (Rampart tests limits last) and an inet table's one bucket for both families are
reported too (without a kernel; iptables-save and nft -j)."""

from __future__ import annotations

import json

import pytest

from compiler import PolicyDocument
from rules.onboarding import translate_iptables_save

HEAD = (
    "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    ":svc - [0:0]\n:inner - [0:0]\n"
)  # the body starts at line 7
LIMIT = "-m limit --limit 10/sec --limit-burst 3"
PER_SOURCE = (
    "-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 3 --hashlimit-mode srcip "
    "--hashlimit-name j"
)


def translate(text: str):
    result = translate_iptables_save(text, keep_ipv6_open=False)
    PolicyDocument.from_dict(result.document)  # always a valid document
    return result, result.document["rulesets"][0]["rules"]


def skipped(result) -> dict[int, tuple[str, str]]:
    return {s.line: (s.reason, s.impact) for s in result.skipped}


def limited(rules: list[dict]) -> list[dict]:
    return [r for r in rules if "rate_limit" in r or "rate_limit_per_source" in r]


@pytest.mark.parametrize(
    ("limit", "kind"), [(LIMIT, "a rate limit"), (PER_SOURCE, "a per-source rate limit")]
)
@pytest.mark.parametrize(
    ("chains", "says"),
    [
        (  # two rules: two buckets where the host had one
            "-A svc -p tcp --dport 22 -j ACCEPT\n-A svc -p tcp --dport 80 -j ACCEPT\n",
            "the 2 rules svc becomes (line 9, line 10) would each have a bucket of their own",
        ),
        (  # one rule, narrower than the jump: tcp to 443 took tokens on the host
            "-A svc -p tcp --dport 22 -j ACCEPT\n",
            "the one rule svc becomes (line 9) matches fewer packets than the jump",
        ),
        (  # a conditional RETURN: the returned packets took a token on the host
            "-A svc -s 198.18.0.9 -j RETURN\n-A svc -j ACCEPT\n",
            "the one rule svc becomes (line 10) matches fewer packets",
        ),
        (  # through a further jump: still two rules under the one bucket
            "-A svc -j inner\n-A inner -p tcp --dport 22 -j ACCEPT\n-A inner -j DROP\n",
            "the 2 rules svc becomes (line 10, line 11)",
        ),
    ],
)
def test_a_limit_on_a_jump_that_would_become_several_buckets_is_a_loss(limit, kind, chains, says):
    result, rules = translate(
        HEAD + f"-A INPUT -p tcp {limit} -j svc\n-A INPUT -p tcp -j DROP\n" + chains + "COMMIT\n"
    )
    reason, impact = skipped(result)[7]
    assert reason.startswith(f"jump to svc with {kind}: not importable exactly"), reason
    assert says in reason, reason
    assert impact != "verdict-neutral"
    assert 7 in {s.line for s in result.losses()}
    assert not limited(rules)  # nothing half-imported
    assert rules[0]["action"] == "drop" and rules[0]["comment"] == "iptables-save line 8"


@pytest.mark.parametrize("limit", [LIMIT, PER_SOURCE])
@pytest.mark.parametrize(
    "chains",
    [
        "-A svc -j ACCEPT\n",
        "-A svc -p tcp -j ACCEPT\n",  # the jump's own protocol
        "-A svc -j ACCEPT\n-A svc -j DROP\n",  # the DROP is unreachable
        '-A svc -j LOG --log-prefix "svc "\n-A svc -j ACCEPT\n',  # the LOG is the rule's
        "-A svc -j inner\n-A inner -j ACCEPT\n",
    ],
)
def test_a_limit_on_a_jump_to_one_rule_matching_all_its_packets_is_copied(limit, chains):
    result, rules = translate(
        HEAD + f"-A INPUT -p tcp {limit} -j svc\n-A INPUT -p tcp -j DROP\n" + chains + "COMMIT\n"
    )
    assert 7 not in skipped(result)
    assert not result.losses()
    assert len(limited(rules)) == 1
    rule = limited(rules)[0]
    assert (rule["action"], rule["protocol"]) == ("accept", "tcp")
    assert result.translated[7] == [0]
    if limit == LIMIT:
        assert (rule["rate_limit"], rule["burst"]) == ("10/second", 3)
    else:
        assert rule["rate_limit_per_source"] == {"rate": "10/second", "burst": 3}


def test_a_limit_on_a_jump_to_a_chain_that_decides_nothing_is_kept():
    """An empty chain: the bucket decides nothing on the host either."""
    result, rules = translate(HEAD + f"-A INPUT {LIMIT} -j svc\n-A INPUT -j ACCEPT\nCOMMIT\n")
    assert result.translated[7] == [] and not result.losses() and not limited(rules)


def _nft(*rules: list, family: str = "inet") -> str:
    """A table (inet unless told): base chain `in` (input, drop) and the regular chain
    `svc`."""
    items: list[dict] = [
        {"metainfo": {"json_schema_version": 1}},
        {"table": {"family": family, "name": "t"}},  # 2
        {
            "chain": {
                "family": family,
                "table": "t",
                "name": "in",
                "type": "filter",
                "hook": "input",
                "prio": 0,
                "policy": "drop",
            }
        },  # 3
        {"chain": {"family": family, "table": "t", "name": "svc"}},  # 4
    ]
    for chain, *expr in rules:
        items.append({"rule": {"family": family, "table": "t", "chain": chain, "expr": expr}})
    return json.dumps({"nftables": items})


TCP = {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}
NFT_LIMIT = {"limit": {"rate": 10, "per": "second", "burst": 3}}


def _dport(port: int) -> dict:
    return {
        "match": {
            "op": "==",
            "left": {"payload": {"protocol": "tcp", "field": "dport"}},
            "right": port,
        }
    }


def test_nft_limit_on_a_jump_into_two_rules_is_a_loss():
    result, rules = translate(
        _nft(
            ["in", TCP, NFT_LIMIT, {"jump": {"target": "svc"}}],  # 5
            ["svc", _dport(22), {"accept": None}],  # 6
            ["svc", _dport(80), {"accept": None}],  # 7
        )
    )
    reason, impact = skipped(result)[5]
    assert reason.startswith("jump to svc with a rate limit: not importable exactly"), reason
    assert "the 2 rules svc becomes (nft item 6, nft item 7)" in reason, reason
    assert impact == "more restrictive" and not limited(rules)


def test_nft_limit_on_a_jump_into_one_rule_is_copied():
    result, rules = translate(
        _nft(
            ["in", TCP, NFT_LIMIT, {"jump": {"target": "svc"}}],  # 5
            ["svc", {"accept": None}],  # 6
        )
    )
    assert 5 not in skipped(result) and not result.losses()
    assert [(r["rate_limit"], r["burst"], r["comment"]) for r in limited(rules)] == [
        ("10/second", 3, "nft item 6")
    ] * 2  # IPv4's and IPv6's
    # one bucket for both families on the host, one per family imported: said
    assert [(n.line, n.reason.startswith("limit in an inet table")) for n in result.notes] == [
        (5, True)
    ]


def test_an_inet_tables_limit_is_noted_as_a_bucket_per_family():
    result, rules = translate(_nft(["in", TCP, NFT_LIMIT, {"accept": None}]))  # 5
    assert len(limited(rules)) == 2 and not result.losses()
    (note,) = result.notes
    assert note.line == 5 and note.impact == "more permissive"
    assert "one bucket for IPv4 and IPv6 packets together" in note.reason


@pytest.mark.parametrize("family", ["ip", "ip6"])
def test_a_one_family_tables_limit_is_exact(family):
    result, rules = translate(_nft(["in", TCP, NFT_LIMIT, {"accept": None}], family=family))
    assert len(limited(rules)) == 1 and not result.notes and not result.losses()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (  # every tcp packet took a token on the host, not only port 22's
            f"-A INPUT -p tcp {LIMIT} -m tcp --dport 22 -j ACCEPT\n",
            "-m tcp after -m limit: on the host every packet reaching the limit takes a token",
        ),
        (
            f"-A INPUT {PER_SOURCE} -m conntrack --ctstate NEW -j ACCEPT\n",
            "-m conntrack after -m hashlimit",
        ),
        (  # the compiler tests rate_limit before rate_limit_per_source: not this order
            f"-A INPUT -p tcp {PER_SOURCE} {LIMIT} -j ACCEPT\n",
            "-m limit after -m hashlimit",
        ),
    ],
)
def test_a_match_after_a_limit_is_a_loss(body, says):
    result, rules = translate(HEAD + body + "COMMIT\n")
    reason, impact = skipped(result)[7]
    assert reason.startswith(says) and impact == "more restrictive", reason
    assert not limited(rules)


@pytest.mark.parametrize(
    "body",
    [
        f"-A INPUT -p tcp -m tcp --dport 22 {LIMIT} -m comment --comment ssh -j ACCEPT\n",
        f"-A INPUT -p tcp -m tcp --dport 22 {LIMIT} {PER_SOURCE} -j ACCEPT\n",
    ],
)
def test_limits_after_the_other_matches_are_imported(body):
    result, rules = translate(HEAD + body + "COMMIT\n")
    assert 7 not in skipped(result) and len(limited(rules)) == 1


def test_nft_a_match_after_a_limit_statement_is_a_loss():
    result, rules = translate(
        _nft(
            ["in", NFT_LIMIT, _dport(22), {"accept": None}],  # 5
            ["in", _dport(80), NFT_LIMIT, NFT_LIMIT, {"accept": None}],  # 6
            ["in", _dport(443), NFT_LIMIT, {"accept": None}],  # 7
        )
    )
    reasons = {line: reason for line, (reason, _) in skipped(result).items()}
    assert reasons[5].startswith("a match after a limit statement: on the host every packet")
    assert reasons[6] == "two limit statements in one rule have no equivalent"
    assert [r["dports"] for r in limited(rules)] == [["443"], ["443"]]  # IPv4's and IPv6's
