"""The differential suite's own judgement, without namespaces: when an import report's loss
explains a disagreement (differential.flagged), and how a burst compares."""

from __future__ import annotations

from .differential import Probe, flagged, loss_covers, table
from .dumps import DOCKER_HOST
from .test_differential_netns import docker_own, in_order

SSH = Probe("tcp", "198.18.40.1", "198.18.40.2", 22, "input")


def report(*losses: tuple[int, str, str], nat: list | None = None) -> dict:
    return {
        "losses": [{"line": n, "text": t, "impact": i} for n, t, i in losses],
        "skipped": [{"line": n, "text": t, "impact": i} for n, t, i in losses],
        "document": {"rulesets": [{"nat": nat or []}]},
    }


def test_a_loss_covers_a_probe_only_if_its_matches_can():
    assert loss_covers("-A INPUT -p tcp -m tcp --dport 22 -m recent --rcheck -j ACCEPT", SSH)
    assert not loss_covers("-A INPUT -p udp -m udp --dport 22 -j ACCEPT", SSH)
    assert not loss_covers("-A INPUT -p tcp -m tcp ! --dport 22 -j DROP", SSH)
    assert not loss_covers("-A INPUT -s 198.19.0.0/16 -j DROP", SSH)
    assert loss_covers("-A INPUT ! -s 198.19.0.0/16 -j DROP", SSH)
    assert not loss_covers("-A FORWARD -p tcp --dport 22 -j DROP", SSH)  # not on its path
    assert not loss_covers("-A ufw6-before-input -m rt --rt-type 0 -j DROP", SSH)
    assert not loss_covers("-A tcpflags -p tcp -m tcp --tcp-flags SYN,RST SYN,RST -j DROP", SSH)
    assert loss_covers("-A tcpflags -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j DROP", SSH)
    assert not loss_covers("-A POSTROUTING -o eth0 -j MASQUERADE", SSH)


def test_flagged_needs_the_right_direction_and_follows_dnat():
    lost_accept = report((7, "-A INPUT -p tcp -m tcp --dport 22 -m mac --mac-source x -j ACCEPT",
                          "more restrictive"))  # fmt: skip
    assert flagged(SSH, "accepted", "dropped-timeout", {4: lost_accept})
    assert not flagged(SSH, "dropped-timeout", "accepted", {4: lost_accept})  # wrong way
    forward = report(
        (78, "-A net-loc -d 198.19.17.2/32 -p tcp --dport 80 -m conntrack --ctorigdstport 8082 "
         "-j ACCEPT", "more restrictive"),
        nat=[{"type": "dnat", "dports": ["8082"], "to": "198.19.17.2:80"}],
    )  # fmt: skip
    port_forward = Probe("tcp", "198.18.40.1", "198.18.40.2", 8082, "input")
    assert [x["line"] for x in flagged(port_forward, "accepted", "dropped-timeout", {4: forward})]
    other = Probe("tcp", "198.18.40.1", "198.18.40.2", 8083, "input")
    assert not flagged(other, "accepted", "dropped-timeout", {4: forward})


def test_bursts_compare_by_counts_and_docker_keeps_only_its_own_chains():
    assert in_order(["accepted", "rejected-icmp", "accepted"], 3) == in_order(
        ["rejected-icmp", "accepted", "accepted"], 3
    )
    assert in_order(["accepted", "rejected-icmp"], 2) != in_order(["accepted", "accepted"], 2)
    own = docker_own(DOCKER_HOST)
    assert ":INPUT ACCEPT [0:0]" in own and "admin-ssh" not in own
    assert "-A DOCKER-USER -j RETURN" in own and "-j DNAT" in own
    assert table([]).splitlines()[-1].split()[:2] == ["overall", "0"]


def test_nft_lines_as_the_report_quotes_them():
    assert not loss_covers("inet firewalld filter_IN_public_allow: tcp dport 23 accept", SSH)
    assert loss_covers("inet firewalld filter_IN_public_allow: tcp dport 22 accept", SSH)
    assert not loss_covers("inet t in: tcp dport != 22 drop", SSH)
    assert not loss_covers("inet t in: ip saddr 198.19.0.0/16 drop", SSH)
    assert not loss_covers("inet t in: meta l4proto udp accept", SSH)
    assert not loss_covers("inet firewalld filter_FORWARD: tcp dport 22 accept", SSH)
    assert not loss_covers("inet firewalld nat_POST_public_allow: oifname != lo masquerade", SSH)
