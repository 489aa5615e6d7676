"""The tracer walks the compiled chains; these pin its answers on the example policy."""

from __future__ import annotations

import pytest

from compiler import Packet, PolicyDocument, Tracer, compile_device

from . import cases

RID = "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1"


@pytest.fixture(scope="module")
def tracer():
    bundle = compile_device(PolicyDocument.from_dict(cases.example()), "web-1", now=cases.NOW)
    return Tracer(bundle.program)


def run(tracer, **params):
    return tracer.trace(Packet.from_params(params))


def test_office_reaches_the_web_tier(tracer):
    result = run(
        tracer,
        protocol="tcp",
        source="198.18.0.5",
        destination="198.18.1.11",
        dport="8444",
        in_interface="eth0",
    )
    assert (result.verdict, result.rule_id, result.ruleset, result.position) == (
        "accept",
        RID,
        "web-baseline",
        1,
    )
    assert [s.chain for s in result.path] == ["INPUT", "RPT-INPUT", "RPT-I-web-baseline-5e4e2934"]


def test_every_field_of_the_rule_must_match(tracer):
    base = {
        "protocol": "tcp",
        "source": "198.18.0.5",
        "destination": "198.18.1.11",
        "dport": "443",
        "in_interface": "eth0",
    }
    assert run(tracer, **base).verdict == "accept"
    for change in (
        {"in_interface": "eth1"},
        {"dport": "444"},
        {"destination": "198.18.1.12"},
        {"source": "198.18.1.5"},
        {"protocol": "udp"},
        {"state": "untracked"},
    ):
        result = run(tracer, **{**base, **change})
        assert (result.verdict, result.tag) == ("drop", "rpt:sys:default"), change


def test_negated_sources_and_reject(tracer):
    mysql = run(
        tracer, protocol="tcp", source="198.18.7.5", destination="198.18.1.10", dport="3306"
    )
    assert mysql.verdict == "drop" and mysql.position == 5
    inside = run(
        tracer, protocol="tcp", source="198.18.0.9", destination="198.18.1.10", dport="3306"
    )
    assert inside.tag == "rpt:sys:default"
    dns = run(
        tracer,
        protocol="udp",
        source="198.18.4.40",
        destination="198.18.1.10",
        sport="5000",
        dport="5353",
    )
    assert (dns.verdict, dns.position) == ("reject", 4)
    low_sport = run(
        tracer,
        protocol="udp",
        source="198.18.4.40",
        destination="198.18.1.10",
        sport="999",
        dport="53",
    )
    assert low_sport.tag == "rpt:sys:default"


def test_fixed_steps_come_first(tracer):
    lo = run(
        tracer,
        protocol="tcp",
        source="198.18.0.5",
        destination="198.18.0.5",
        dport="3306",
        in_interface="lo",
    )
    assert lo.tag == "rpt:sys:loopback"
    est = run(
        tracer,
        protocol="tcp",
        source="198.18.7.5",
        destination="198.18.1.10",
        dport="3306",
        state="established",
    )
    assert (est.verdict, est.tag) == ("accept", "rpt:sys:conntrack")
    inv = run(
        tracer,
        protocol="tcp",
        source="198.18.0.5",
        destination="198.18.1.10",
        dport="443",
        in_interface="eth0",
        state="invalid",
    )
    assert (inv.verdict, inv.tag) == ("drop", "rpt:sys:conntrack")
    nd = run(
        tracer,
        protocol="icmpv6",
        source="2001:2::99",
        destination="2001:2::1",
        icmp_type="neighbour-solicitation",
    )
    assert nd.tag == "rpt:sys:icmpv6-nd"
    mgmt = run(tracer, protocol="tcp", source="2001:2::1", destination="2001:2::2", dport="8745")
    assert (mgmt.verdict, mgmt.tag) == ("accept", "rpt:sys:mgmt")


def test_no_rule_set_can_lock_out_management():
    data = cases.example()
    data["rulesets"][0]["rules"].insert(
        0, {"chain": "input", "action": "drop", "sources": ["198.18.0.1"]}
    )
    bundle = compile_device(PolicyDocument.from_dict(data), "web-1", now=cases.NOW)
    tracer = Tracer(bundle.program)
    ssh = run(tracer, protocol="tcp", source="198.18.0.1", destination="198.18.0.2", dport="22")
    assert (ssh.verdict, ssh.tag) == ("accept", "rpt:sys:mgmt")
    other = run(tracer, protocol="tcp", source="198.18.0.1", destination="198.18.0.2", dport="80")
    assert (other.verdict, other.position) == ("drop", 1)


def test_rate_limit_and_log_are_noted(tracer):
    ping = run(
        tracer,
        protocol="icmp",
        source="198.18.9.9",
        destination="198.18.1.10",
        icmp_type="echo-request",
    )
    assert ping.verdict == "accept" and any("rate limited" in n for n in ping.notes)
    ssh = run(
        tracer, protocol="tcp", source="2001:2:0:100::7", destination="2001:2::10", dport="22"
    )
    assert ssh.verdict == "accept" and any("logged" in n for n in ssh.notes)
    assert ssh.path[-2].rule.endswith('-j LOG --log-prefix "rpt:65682938 "')


def test_output_and_forward_chains(tracer):
    dns = run(
        tracer,
        chain="output",
        protocol="udp",
        source="198.18.1.10",
        destination="198.18.9.53",
        dport="53",
    )
    assert dns.verdict == "accept" and dns.position == 6
    fwd = run(
        tracer,
        chain="forward",
        protocol="tcp",
        source="198.18.0.5",
        destination="198.18.200.1",
        dport="1",
        in_interface="eth1",
        out_interface="eth7",
    )
    assert fwd.verdict == "accept" and fwd.position == 7
    fwd_other = run(
        tracer,
        chain="forward",
        protocol="tcp",
        source="198.18.0.5",
        destination="198.18.200.1",
        dport="1",
        in_interface="eth2",
        out_interface="eth7",
    )
    assert fwd_other.tag == "rpt:sys:default"


ND = {
    "protocol": "icmpv6",
    "source": "2001:2::99",
    "destination": "2001:2::1",
    "icmp_type": "neighbour-solicitation",
}


def test_neighbour_discovery_needs_hop_limit_255(tracer):
    """The system ND accepts match hop limit 255 only (`-m hl --hl-eq 255`), as the kernel
    does: a routed solicitation (hop limit 64) falls through to the default drop."""
    on_link = run(tracer, **ND, hop_limit="255")
    assert (on_link.verdict, on_link.tag) == ("accept", "rpt:sys:icmpv6-nd")
    routed = run(tracer, **ND, hop_limit="64")
    assert (routed.verdict, routed.tag) == ("drop", "rpt:sys:default")
    assert any("rpt:sys:icmpv6-nd not matched: hop limit 64, not 255" in n for n in routed.notes)
    assert not any("hop limit" in n for n in on_link.notes)


def test_hop_limit_defaults_to_what_senders_set(tracer):
    """Without a hop limit, a neighbour discovery message has the 255 every sender gives it
    (so it is the on-link one) and anything else Linux's default 64."""
    nd = Packet.from_params(ND)
    assert (nd.hop_limit, nd.hops) == (None, 255)
    assert tracer.trace(nd).tag == "rpt:sys:icmpv6-nd"
    ping = Packet.from_params({**ND, "icmp_type": "echo-request"})
    assert ping.hops == 64
    v4 = Packet.from_params(
        {"protocol": "tcp", "source": "198.18.0.1", "destination": "198.18.0.2"}
    )
    assert v4.hops is None


def test_state_defaults_to_what_conntrack_gives():
    """Conntrack leaves MLD and router/neighbour discovery untracked (noct_valid_new): such
    a packet traced without a state is `untracked`; anything else `new`; a given one wins."""
    for icmp_type in ("neighbour-solicitation", "router-advertisement", "130", "143"):
        assert Packet.from_params({**ND, "icmp_type": icmp_type}).state == "untracked"
    for icmp_type in ("echo-request", "137", "1"):
        assert Packet.from_params({**ND, "icmp_type": icmp_type}).state == "new"
    assert Packet.from_params({**ND, "state": "established"}).state == "established"
    v4 = {"protocol": "icmp", "source": "198.18.0.1", "destination": "198.18.0.2"}
    assert Packet.from_params({**v4, "icmp_type": "8"}).state == "new"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"protocol": "sctp"}, "protocol"),
        ({"hop_limit": "64"}, "hop_limit"),  # IPv4: no hop limit
        (
            {"source": "2001:2::1", "destination": "2001:2::2", "hop_limit": "256"},
            "hop_limit",
        ),
        ({"source": "2001:2::1", "destination": "2001:2::2", "hop_limit": "-1"}, "hop_limit"),
        # more digits than int() converts (4300): a field error, not a bare ValueError
        ({"source": "2001:2::1", "destination": "2001:2::2", "hop_limit": "9" * 5000}, "hop_limit"),
        ({"dport": "9" * 5000}, "dport"),
        ({"dport": "0" * 5000}, "dport"),
        ({"source": "2001:2::1", "destination": "2001:2::2", "hop_limit": " "}, "hop_limit"),
        ({"dport": "²"}, "dport"),  # a digit to str.isdigit, not to int()
        ({"dport": "70000"}, "dport"),
        ({"destination": "2001:2::1"}, "destination"),
        ({"source": "not-an-ip"}, "source"),
        ({"protocol": "icmp", "dport": "80"}, "dport"),
        ({"state": "sleepy"}, "state"),
        ({"chain": "prerouting"}, "chain"),
        ({"in_interface": "eth+"}, "in_interface"),
    ],
)
def test_bad_packets_name_the_field(params, field):
    full = {"protocol": "tcp", "source": "198.18.0.1", "destination": "198.18.0.2", **params}
    with pytest.raises(ValueError) as info:
        Packet.from_params(full)
    assert field in [e.path for e in info.value.errors]
