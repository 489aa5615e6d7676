"""Per-source limits in a dump: `-m hashlimit` (mode srcip) and ufw's `-m recent` pair
imported as `rate_limit_per_source`, and what has no equivalent reported with its verdict
class (without a kernel; test_onboarding_limits_netns.py probes the migrated host)."""

from __future__ import annotations

import pytest

from compiler import PolicyDocument
from rules.onboarding import translate_iptables_save
from rules.onboarding.limits import window_rate

HEAD = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
UFW_LIMIT = (
    HEAD
    + ":user-limit - [0:0]\n:user-limit-accept - [0:0]\n"
    + "-A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --set "
    "--name DEFAULT --mask 255.255.255.255 --rsource\n"  # line 7
     + "-A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --update "
    "--seconds 30 --hitcount 6 --name DEFAULT --mask 255.255.255.255 --rsource -j user-limit\n"
    + "-A INPUT -p tcp -m tcp --dport 22 -j user-limit-accept\n"  # line 9
    + '-A user-limit -m limit --limit 3/min -j LOG --log-prefix "[UFW LIMIT BLOCK] "\n'
    + "-A user-limit -j REJECT --reject-with icmp-port-unreachable\n"
    + "-A user-limit-accept -j ACCEPT\n"
    + "COMMIT\n"
)


def translate(body: str):
    result = translate_iptables_save(HEAD + body + "COMMIT\n", keep_ipv6_open=False)
    PolicyDocument.from_dict(result.document)  # always a valid document
    return result, result.document["rulesets"][0]["rules"]


def skipped(result) -> dict[int, tuple[str, str]]:
    return {s.line: (s.reason, s.impact) for s in result.skipped}


def test_ufw_limit_becomes_a_per_source_accept_before_the_reject():
    result = translate_iptables_save(UFW_LIMIT, keep_ipv6_open=False)
    PolicyDocument.from_dict(result.document)
    rules = result.document["rulesets"][0]["rules"]
    base = {"sources": ["0.0.0.0/0"], "protocol": "tcp", "dports": ["22"]}
    assert rules[:3] == [
        {
            "chain": "input",
            "action": "accept",
            **base,
            "states": ["new"],
            "rate_limit_per_source": {"rate": "10/minute", "burst": 5},
            "comment": "iptables-save line 8",
        },
        {
            "chain": "input",
            "action": "reject",
            **base,
            "states": ["new"],
            "comment": "iptables-save line 11",
        },
        {"chain": "input", "action": "accept", **base, "comment": "iptables-save line 12"},
    ]
    assert result.translated[7] == [] and result.translated[8] == [0, 1]
    assert not result.losses()
    notes = {n.line: n for n in result.notes}
    assert "folded into line 8" in notes[7].reason
    assert notes[8].impact == "more permissive" and "token bucket" in notes[8].reason
    assert skipped(result)[10][1] == "verdict-neutral"  # the limited LOG of its own


def test_hashlimit_upto_is_the_per_source_limit():
    result, rules = translate(
        "-A INPUT -p tcp -m tcp --dport 80 -m hashlimit --hashlimit-upto 50/min "
        "--hashlimit-burst 20 --hashlimit-mode srcip --hashlimit-name web "
        "--hashlimit-srcmask 24 --hashlimit-htable-expire 60000 -j ACCEPT\n"
    )
    assert rules[0]["rate_limit_per_source"] == {
        "rate": "50/minute",
        "burst": 20,
        "ipv4_prefix": 24,
    }
    assert any("htable-expire left out" in n.reason for n in result.notes)


@pytest.mark.parametrize(
    ("body", "says", "impact"),
    [
        (
            "-A INPUT -m hashlimit --hashlimit-upto 5/sec --hashlimit-mode dstip "
            "--hashlimit-name x -j ACCEPT\n",
            "mode dstip has no equivalent",
            "more restrictive",
        ),
        (  # above, but nothing accepts the rest after it
            "-A INPUT -p tcp --dport 23 -m hashlimit --hashlimit-above 1/sec "
            "--hashlimit-mode srcip --hashlimit-name t -j DROP\n",
            "only when the next rule accepts the same packets",
            "more permissive",
        ),
        (  # a list filled elsewhere (port knocking): no limit to speak of
            "-A INPUT -p tcp --dport 22 -m recent --rcheck --name admins -j ACCEPT\n",
            "-m recent --rcheck --name admins has no equivalent",
            "more restrictive",
        ),
        (  # no --set before it
            "-A INPUT -p tcp --dport 22 -m recent --update --seconds 60 --hitcount 4 -j DROP\n"
            "-A INPUT -p tcp --dport 22 -j ACCEPT\n",
            "no -m recent --set of the same list before it",
            "more permissive",
        ),
        (  # Rampart's own rate_limit spelling (one bucket shared by every rule naming
            # the table): not a per-source limit, and not one rule's `-m limit` either
            "-A INPUT -p udp -m hashlimit --hashlimit-upto 1/hour --hashlimit-burst 3 "
            "--hashlimit-name rpr0123456789a --hashlimit-htable-expire 10800000 -j ACCEPT\n",
            "mode none has no equivalent",
            "more restrictive",
        ),
        (
            "-A INPUT -m hashlimit --hashlimit-upto 1/day --hashlimit-burst 9 "
            "--hashlimit-mode srcip --hashlimit-name x -j ACCEPT\n",
            "overflows the kernel's hashlimit match",
            "more restrictive",
        ),
    ],
)
def test_what_has_no_equivalent_is_reported_with_its_class(body, says, impact):
    result, _ = translate(body)
    reason, got = skipped(result)[5]
    assert says in reason and got == impact, (reason, got)


def test_above_before_an_accept_and_the_feeder_without_its_pair():
    result, rules = translate(
        "-A INPUT -p tcp --dport 25 -m recent --set --name smtp\n"  # line 5: no pair
        "-A INPUT -p tcp --dport 22 -m hashlimit --hashlimit-above 3/min --hashlimit-mode srcip "
        "--hashlimit-name s -j DROP\n"
        "-A INPUT -p tcp --dport 22 -j ACCEPT\n"
    )
    assert [(r["action"], r.get("rate_limit_per_source")) for r in rules[:3]] == [
        ("accept", {"rate": "3/minute"}),
        ("drop", None),
        ("accept", None),
    ]
    assert skipped(result)[5] == (
        "-m recent --set only records the source for a later -m recent rule of the same "
        "list, which is not imported",
        "verdict-neutral",
    )


def test_window_rates():
    assert window_rate(5, 30) == ("10/minute", True)
    assert window_rate(3, 60) == ("3/minute", True)
    assert window_rate(1, 7) == ("12342/day", False)
