"""NAT in the tracer (compiler/tracer_nat.py): a new connection passes nat PREROUTING or
OUTPUT before the filter table, a DNAT to another address re-decides INPUT/FORWARD, SNAT
and MASQUERADE are reported after an accepted forward, management traffic is exempt."""

from __future__ import annotations

from compiler import Packet, PolicyDocument, Tracer, compile_device

from . import cases

ROUTER = "198.18.1.1"  # the device's address
OTHER = "198.18.2.1"  # another of its addresses
BACKEND = "198.18.50.10"
CLIENT = "198.18.9.5"
ADMIN = "198.18.60.5"


def tracer(nat: list[dict], rules: list[dict] = (), **device) -> Tracer:
    doc = PolicyDocument.from_dict(
        {
            "version": 1,
            "rulesets": [{"name": "gw", "rules": list(rules), "nat": nat}],
            "devices": [{"name": "gw-1", "rulesets": ["gw"], **device}],
        }
    )
    program = compile_device(doc, "gw-1", now=cases.NOW).program
    return Tracer(program, local_addresses=[ROUTER, f"{OTHER}/32"])


def run(t: Tracer, **params):
    base = {"protocol": "tcp", "source": CLIENT, "destination": ROUTER, "sport": "40000"}
    return t.trace(Packet.from_params({**base, **params}))


def dnat(dport: str, to: str, **more) -> dict:
    return {"type": "dnat", "protocol": "tcp", "dports": [dport], "to": to, **more}


def accept(chain: str, dport: str, **more) -> dict:
    return {"chain": chain, "action": "accept", "protocol": "tcp", "dports": [dport], **more}


def test_dnat_to_another_host_turns_an_input_trace_into_a_forward_one():
    t = tracer([dnat("80", f"{BACKEND}:8000")], [accept("forward", "8000")])
    result = run(t, dport="80", in_interface="eth0")
    assert (result.verdict, result.chain, result.position) == ("accept", "forward", 1)
    assert [s.chain for s in result.path][:2] == ["FORWARD", "RPT-FORWARD"]
    (step,) = result.nat
    assert (step.hook, step.chain, step.target, step.field) == (
        "PREROUTING",
        "RPT-PREROUTING",
        "DNAT",
        "destination",
    )
    assert (step.before, step.after, step.ruleset, step.position) == (
        f"{ROUTER}:80",
        f"{BACKEND}:8000",
        "gw",
        1,
    )
    assert "--to-destination 198.18.50.10:8000" in step.rule and step.tag.startswith("rpt:")
    assert any("routed (FORWARD)" in n for n in result.notes)
    # the filter sees the rewritten destination: an input rule for port 80 does not apply
    t = tracer([dnat("80", f"{BACKEND}:8000")], [accept("input", "80")])
    result = run(t, dport="80")
    assert (result.verdict, result.chain, result.tag) == ("drop", "forward", "rpt:sys:default")


def test_without_nat_modelled_the_same_packet_would_have_been_dropped_at_input():
    t = tracer([dnat("80", f"{BACKEND}:8000")], [accept("forward", "8000")])
    packet = Packet.from_params(
        {"protocol": "tcp", "source": CLIENT, "destination": ROUTER, "dport": "80"}
    )
    assert t.filter(packet).verdict == "drop"
    assert t.trace(packet).verdict == "accept"


def test_dnat_to_a_local_address_or_port_only_stays_input():
    rules = [accept("input", "8080")]
    for to in (f"{ROUTER}:8080", f"{OTHER}:8080"):  # a redirect: same or another own address
        result = run(tracer([dnat("80", to)], rules), dport="80")
        assert (result.verdict, result.chain, result.position) == ("accept", "input", 1), to
        assert result.nat[0].after == to
    # an address the tracer is not told is the device's: forwarded
    result = run(tracer([dnat("80", "198.18.3.1:8080")], rules), dport="80")
    assert (result.verdict, result.chain) == ("drop", "forward")


def test_forward_packet_dnated_to_the_device_is_delivered_locally():
    t = tracer([dnat("80", f"{ROUTER}:8080")], [accept("input", "8080")])
    result = run(
        t,
        chain="forward",
        destination="198.18.77.7",
        dport="80",
        in_interface="eth0",
        out_interface="eth1",
    )
    assert (result.verdict, result.chain) == ("accept", "input")
    assert any("delivered locally (INPUT)" in n for n in result.notes)


def test_dnat_keeps_the_port_without_one_and_maps_into_a_range():
    t = tracer(
        [
            dnat("80", BACKEND),
            {"type": "dnat", "protocol": "tcp", "dports": ["90-99"], "to": f"{BACKEND}:95-96"},
        ],
        [accept("forward", "1-65535")],
    )
    assert run(t, dport="80").nat[0].after == f"{BACKEND}:80"
    assert run(t, dport="96").nat[0].after == f"{BACKEND}:96"  # inside: kept
    outside = run(t, dport="90")
    assert outside.nat[0].after == f"{BACKEND}:95"  # the first of the range
    assert any("port range 95-96" in n for n in outside.notes)


def test_snat_and_masquerade_are_shown_after_an_accepted_forward_only():
    nat = [
        {"type": "snat", "sources": [CLIENT], "out_interface": "eth1", "to": "198.18.51.1"},
        {"type": "masquerade", "out_interface": "eth2"},
    ]
    t = tracer(nat, [accept("forward", "443")])
    fwd = {"chain": "forward", "destination": "198.18.77.7", "in_interface": "eth0"}
    result = run(t, dport="443", out_interface="eth1", **fwd)
    assert result.verdict == "accept"
    assert [(s.hook, s.target, s.field, s.before, s.after) for s in result.nat] == [
        ("POSTROUTING", "SNAT", "source", f"{CLIENT}:40000", "198.18.51.1:40000")
    ]
    masq = run(t, dport="443", out_interface="eth2", **fwd).nat
    assert [(s.target, s.after) for s in masq] == [("MASQUERADE", "<the address of eth2>:40000")]
    assert run(t, dport="444", out_interface="eth1", **fwd).nat == []  # dropped: never there
    assert run(t, dport="443").nat == []  # input: POSTROUTING is not on its way


def test_management_traffic_to_the_device_is_exempt_from_dnat():
    t = tracer(
        [dnat("22", f"{BACKEND}:22")],
        [accept("forward", "22")],
        management_sources=[ADMIN],
    )
    admin = run(t, source=ADMIN, dport="22")
    assert (admin.verdict, admin.chain, admin.tag) == ("accept", "input", "rpt:sys:mgmt")
    (step,) = admin.nat
    assert (step.target, step.tag, step.before, step.after) == (
        "RETURN",
        "rpt:sys:mgmt",
        f"{ROUTER}:22",
        f"{ROUTER}:22",
    )
    assert "--dst-type LOCAL" in step.rule
    other = run(t, dport="22")  # not a management source: redirected
    assert (other.chain, other.nat[0].target) == ("forward", "DNAT")
    # addrtype LOCAL: a management source's ssh through the device is not exempt
    through = run(t, source=ADMIN, chain="forward", destination="198.18.77.7", dport="22")
    assert [s.target for s in through.nat] == ["DNAT"]
    # a local address other than the one traced: still the device's own
    local = run(t, source=ADMIN, chain="forward", destination=OTHER, dport="22")
    assert [s.target for s in local.nat] == ["RETURN"]


def test_output_dnat_comes_before_the_filter_output_chain():
    data = cases.nat()
    data["rulesets"][0]["rules"].append(
        {"chain": "output", "action": "reject", "protocol": "udp", "dports": ["5353"]}
    )
    program = compile_device(PolicyDocument.from_dict(data), "gw-1", now=cases.NOW).program
    result = Tracer(program).trace(
        Packet.from_params(
            {
                "chain": "output",
                "protocol": "udp",
                "source": "2001:2::1",
                "destination": "2001:2:0:99::1",
                "dport": "53",
            }
        )
    )
    assert (result.verdict, result.chain) == ("reject", "output")
    assert [(s.hook, s.after) for s in result.nat] == [("OUTPUT", "[2001:2:0:50::53]:5353")]


def test_established_traffic_does_not_walk_the_nat_chains():
    t = tracer([dnat("80", f"{BACKEND}:8000")])
    result = run(t, dport="80", state="established")
    assert (result.verdict, result.chain, result.nat) == ("accept", "input", [])
    assert any("nat chains are not traversed" in n for n in result.notes)


def test_to_dict_keeps_its_keys_and_adds_the_nat_steps():
    result = run(tracer([dnat("80", f"{BACKEND}:8000")]), dport="80")
    out = result.to_dict()
    assert set(out) == {"verdict", "decided_by", "path", "notes", "chain", "nat"}
    assert out["chain"] == "forward"
    assert out["nat"][0] | {"rule": "", "tag": "", "rule_id": ""} == {
        "hook": "PREROUTING",
        "chain": "RPT-PREROUTING",
        "index": 1,
        "rule": "",
        "tag": "",
        "target": "DNAT",
        "field": "destination",
        "before": f"{ROUTER}:80",
        "after": f"{BACKEND}:8000",
        "rule_id": "",
        "ruleset": "gw",
        "position": 1,
    }


def test_a_device_without_nat_traces_as_before():
    t = tracer([], [accept("input", "80")])
    for state in ("new", "established"):
        result = run(t, dport="80", state=state)
        assert (result.nat, result.notes, result.chain) == ([], [], "input")
