"""iptables-save → rule set, without a kernel: what is translated, and that nothing is lost
without a reason (every rule line is translated or reported)."""

from __future__ import annotations

import re

from compiler import PolicyDocument
from rules.onboarding import recognised_foreign_chains, translate_iptables_save

from .dumps import DOCKER_HOST, DOCKER_IPSETS


def rule_lines(text: str) -> set[int]:
    return {
        n for n, line in enumerate(text.splitlines(), 1) if re.match(r"^(\[\d+:\d+\] )?-A ", line)
    }


def assert_every_line_accounted(result, text: str) -> None:
    skipped = {s.line for s in result.skipped if s.source == "iptables-save"}
    translated = set(result.translated) | set(result.nat_translated)
    assert rule_lines(text) <= skipped | translated, sorted(rule_lines(text) - skipped - translated)


def docker():
    ipsets = DOCKER_IPSETS.format(admin="198.18.0.7", blocked="198.18.66.6")
    return translate_iptables_save(DOCKER_HOST, ipsets, ruleset="docker-host")


def test_docker_host_imports_the_admins_rules_and_reports_dockers():
    result = docker()
    PolicyDocument.from_dict(result.document)  # a valid document
    rules = result.document["rulesets"][0]["rules"]
    assert [(r["chain"], r["action"]) for r in rules] == [
        ("input", "accept"),
        ("input", "accept"),
        ("input", "drop"),
        ("input", "accept"),
        ("input", "drop"),
        ("input", "accept"),
        ("input", "accept"),
        ("input", "accept"),
        ("input", "reject"),
        ("input", "drop"),
        # no catch-all for FORWARD: Docker's chains decide there after Rampart's rules
        ("output", "accept"),
        ("input", "accept"),  # IPv6 kept open: the dump has no ip6tables rules
        ("output", "accept"),
    ]
    assert rules[-1]["sources"] == ["::/0"] and "input, output" in result.ipv6
    assert rules[8]["reject_with"] == "tcp-reset"
    assert rules[2]["sources"] == ["docker-host.blocklist"]
    assert rules[3] == {
        "chain": "input",
        "action": "accept",
        "sources": ["docker-host.admins"],
        "protocol": "tcp",
        "dports": ["22"],
        "comment": "iptables-save line 46",
    }
    assert rules[4]["dports"] == ["22"] and rules[4]["sources"] == ["0.0.0.0/0"]
    assert rules[5]["dports"] == ["80", "443"] and rules[5]["comment"].startswith("web tier")
    assert (rules[7]["protocol"], rules[7]["icmp_type"]) == ("icmp", "echo-request")
    assert rules[7]["rate_limit"] == "5/second"
    assert rules[7]["burst"] == 10
    assert rules[8]["log"] is True and rules[8]["log_prefix"] == "telnet: "  # its space kept
    groups = {g["name"]: g["members"] for g in result.document["address_groups"]}
    assert groups == {
        "docker-host.admins": ["198.18.0.7"],
        "docker-host.blocklist": ["198.19.66.0/24", "198.18.66.6"],
    }
    owners = {c.name: c.owner for c in result.foreign_chains}
    assert owners["DOCKER"] == owners["DOCKER-ISOLATION-STAGE-1"] == "Docker"
    assert "DOCKER-USER" not in owners  # the administrator's chain: imported
    assert result.translated[34] == [] and result.translated[45] == []
    notes = {n.line: n.reason for n in result.notes}
    assert "policy of FORWARD (DROP) is not imported" in notes[16]
    assert "FORWARD (rules naming Docker interfaces)" in owners
    reasons = {s.line: s.reason for s in result.skipped}
    assert "-m mac has no equivalent" in reasons[33]
    assert reasons[11].startswith("chain DOCKER (nat table) belongs to Docker")
    assert reasons[10] == "Docker's rule in the nat table: not imported"  # ! -o docker0
    assert reasons[8] == reasons[9] == "Docker's rule in the nat table: not imported"
    assert "nat" not in result.document["rulesets"][0]
    assert "Docker interface" in reasons[38]
    assert "never reached" in reasons[48]
    assert_every_line_accounted(result, DOCKER_HOST)


def test_unusable_ipset_lines_are_reported():
    result = docker()
    ipset = [s for s in result.skipped if s.source == "ipset save"]
    assert [(s.line, "hash:ip,port" in s.reason) for s in ipset] == [(6, True), (7, True)]


def test_a_rule_using_a_missing_set_is_skipped_with_its_reason():
    result = translate_iptables_save(DOCKER_HOST, "", ruleset="docker-host")
    reasons = {s.line: s.reason for s in result.skipped}
    assert reasons[26] == "set blocklist is not in the ipset dump"
    assert reasons[46] == "set admins is not in the ipset dump"
    assert_every_line_accounted(result, DOCKER_HOST)


def test_recognised_foreign_chains():
    assert recognised_foreign_chains(
        [
            "DOCKER",
            "KUBE-SERVICES",
            "cali-fw-eth0",
            "f2b-sshd",
            "ufw-user-input",
            "INPUT",
            "RPT-INPUT",
        ]
    ) == {
        "DOCKER": "Docker",
        "KUBE-SERVICES": "Kubernetes (kube-proxy/kubelet)",
        "cali-fw-eth0": "Calico",
        "f2b-sshd": "fail2ban",
        "RPT-INPUT": "Rampart (already managed by an agent)",
    }


FLATTEN = """\
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:web - [0:0]
:tail - [0:0]
:cond - [0:0]
[5:300] -A INPUT -s 198.18.0.0/16 -p tcp -j web
-A INPUT -p udp -g tail
-A INPUT -p tcp -m tcp --dport 9 -j DROP
-A web -s 198.18.4.0/24 -p tcp -m tcp --dport 80:90 -j ACCEPT
-A web -p udp -j ACCEPT
-A web -s 198.19.0.0/16 -j ACCEPT
-A web -m conntrack --ctstate NEW -j cond
-A web -j RETURN
-A web -j ACCEPT
-A tail -p udp -m udp --dport 53 -j ACCEPT
-A cond -s 198.18.9.9/32 -j RETURN
-A cond -p tcp -m tcp --dport 443 -j ACCEPT
-A KUBE-FORWARD -j ACCEPT
COMMIT
"""


def test_flattening_combines_matches_and_follows_goto_return_and_contradictions():
    result = translate_iptables_save(FLATTEN, ruleset="flat")
    rules = result.document["rulesets"][0]["rules"]
    assert rules[0] == {
        "chain": "input",
        "action": "accept",
        "sources": ["198.18.4.0/24"],
        "protocol": "tcp",
        "dports": ["80-90"],
        "comment": "iptables-save line 11",
    }
    # line 12 (udp) contradicts the jump's tcp: never reached, accounted as translated to nothing
    assert result.translated[12] == []
    # line 13: 198.19.0.0/16 is disjoint from the jump's 198.18.0.0/16
    assert result.translated[13] == []
    # udp goes to `tail`; falling off it ends INPUT, whose policy (drop) then decides
    assert rules[1]["protocol"] == "udp" and rules[1]["dports"] == ["53"]
    assert (rules[2]["action"], rules[2]["protocol"]) == ("drop", "udp") and "dports" not in rules[
        2
    ]
    assert result.translated[9] == [1, 2]
    assert rules[3]["dports"] == ["9"]
    assert rules[4]["comment"] == "policy of INPUT (iptables-save line 2)"
    reasons = {s.line: s.reason for s in result.skipped}
    assert "negated condition cannot be combined with the matches of the jump" in reasons[14]
    assert "unreachable" in reasons[16]
    assert "KUBE-FORWARD belongs to Kubernetes" in reasons[20]
    assert_every_line_accounted(result, FLATTEN)


def test_an_ipv6_dump_is_scoped_to_ipv6():
    text = (
        "# Generated by ip6tables-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n"
        "-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT\n"
        "-A INPUT -s 2001:2::/48 -j DROP\nCOMMIT\n"
    )
    result = translate_iptables_save(text)
    rules = result.document["rulesets"][0]["rules"]
    assert result.family == 6
    assert rules[0]["sources"] == ["::/0"]
    assert (rules[0]["protocol"], rules[0]["icmp_type"]) == ("icmpv6", "echo-request")
    assert rules[1]["sources"] == ["2001:2::/48"]
    assert rules[2] == {
        "chain": "input",
        "action": "accept",
        "sources": ["::/0"],
        "comment": "policy of INPUT (iptables-save line 3)",
    }
    PolicyDocument.from_dict(result.document)


def test_docker_user_rules_are_the_admins_and_forward_has_no_catch_all():
    dump = DOCKER_HOST.replace(
        "-A DOCKER-USER -j RETURN\n",
        "-A DOCKER-USER -s 198.19.100.0/24 -j DROP\n-A DOCKER-USER -j RETURN\n",
    )
    result = translate_iptables_save(dump, ruleset="dh")
    forward = [r for r in result.document["rulesets"][0]["rules"] if r["chain"] == "forward"]
    # only the admin's DOCKER-USER rule: nothing in FORWARD runs before Docker's chains
    # but what the administrator put there for that very purpose
    assert forward == [
        {
            "chain": "forward",
            "action": "drop",
            "sources": ["198.19.100.0/24"],
            "comment": "iptables-save line 45",
        }
    ]
    assert result.translated[34] == [next(iter(result.translated[45]))]
    assert all(s.line not in (34, 45, 46) for s in result.skipped)


def test_a_log_prefix_no_dataplane_could_carry_is_left_out_saying_why():
    """A backslash is kept (every dataplane carries it), and so is the trailing space (the
    host's log lines read `C:\\tel IN=...`); `$` (nft's variables) is not, and the note
    gives the validator's reason, not a length that was never the problem."""
    text = (
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        '-A INPUT -p tcp -m tcp --dport 23 -j LOG --log-prefix "C:\\\\tel "\n'
        "-A INPUT -p tcp -m tcp --dport 23 -j DROP\n"
        '-A INPUT -p tcp -m tcp --dport 25 -j LOG --log-prefix "cost $5 "\n'
        "-A INPUT -p tcp -m tcp --dport 25 -j DROP\n"
        "COMMIT\n"
    )
    result = translate_iptables_save(text, keep_ipv6_open=False)
    PolicyDocument.from_dict(result.document)
    rules = result.document["rulesets"][0]["rules"]
    assert [r.get("log_prefix") for r in rules if r.get("log")] == ["C:\\tel ", None]
    notes = [n.reason for n in result.notes if "log prefix" in n.reason]
    assert notes == [
        "log prefix 'cost $5 ' left out: log prefix cannot hold '$' (nft reads it as a variable)"
    ]
