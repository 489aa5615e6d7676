"""NAT type `redirect` (to the device itself, `-j REDIRECT --to-ports`): parsed, rendered
for both backends, traced, and in a real kernel a connect to the redirected port reaches
the local service on the other port."""

from __future__ import annotations

import pytest

from compiler import Packet, PolicyDocument, Tracer, compile_device
from compiler.errors import DocumentError
from compiler.render_nft import render_nft
from compiler.validate import nat_errors
from tests.support.netns import host_pair, needs_netns

from . import cases
from .kernel import load, rules_by_chain, saved_rules


def doc(*nat: dict, input_policy: str = "drop") -> dict:
    return {
        "version": 1,
        "rulesets": [
            {
                "name": "rd",
                "rules": [
                    {"chain": "input", "action": "accept", "protocol": "tcp", "dports": ["8080"]}
                ],
                "nat": list(nat),
            }
        ],
        "devices": [{"name": "d", "rulesets": ["rd"], "default_policy": {"input": input_policy}}],
    }


REDIRECT = {"type": "redirect", "protocol": "tcp", "dports": ["8081"], "to": "8080"}


def compiled(*nat: dict):
    return compile_device(PolicyDocument.from_dict(doc(*nat)), "d", now=cases.NOW)


def test_rendered_for_both_backends():
    bundle = compiled(REDIRECT, {"type": "redirect", "protocol": "udp", "chain": "output"})
    nat4 = [line for line in bundle.iptables_v4.splitlines() if "REDIRECT" in line]
    assert nat4[0].startswith("-A RPT-PREROUTING -p tcp -m tcp --dport 8081")
    assert nat4[0].endswith("-j REDIRECT --to-ports 8080")
    assert nat4[1].startswith("-A RPT-OUTPUT -p udp") and nat4[1].endswith("-j REDIRECT")
    script = render_nft(bundle.program)
    assert "redirect to :8080" in script and "counter redirect comment" in script


@pytest.mark.parametrize(
    ("nat", "field", "says"),
    [
        ({**REDIRECT, "to": "198.18.0.1"}, "to", "port"),
        ({**REDIRECT, "protocol": "icmp", "dports": []}, "to", "needs protocol tcp or udp"),
        ({**REDIRECT, "chain": "postrouting"}, "chain", "prerouting or output"),
    ],
)
def test_refused_with_field_messages(nat, field, says):
    errors = nat_errors(nat)
    assert any(says in m for m in errors.get(field, [])), errors
    with pytest.raises(DocumentError):
        PolicyDocument.from_dict(doc(nat))


def test_traced_to_the_device_itself():
    tracer = Tracer(compiled(REDIRECT).program)
    # addressed to a host behind the device: redirected, delivered locally on 8080
    packet = {
        "chain": "forward",
        "protocol": "tcp",
        "dport": "8081",
        "source": "198.18.0.9",
        "destination": "198.18.7.7",
        "state": "new",
    }
    result = tracer.trace(Packet.from_params(packet))
    assert result.verdict == "accept" and result.chain == "input"
    assert result.nat[0].target == "REDIRECT" and result.nat[0].after.endswith(":8080")
    assert any("REDIRECT: delivered to the device itself" in n for n in result.notes)
    other = tracer.trace(Packet.from_params({**packet, "dport": "8082", "chain": "input"}))
    assert other.verdict == "drop" and not other.nat


@pytest.mark.netns
@needs_netns[1]
def test_redirected_connect_reaches_the_local_port():
    bundle = compiled(REDIRECT)
    with host_pair("cprd") as (client, server):
        server.listen(tcp=[8080])
        load(server, bundle)
        for family, text in ((4, bundle.iptables_v4), (6, bundle.iptables_v6)):
            assert saved_rules(server, family) == rules_by_chain(text)
        for host in (server.addr4, server.addr6):
            assert client.tcp_ok(host, 8081) and client.tcp_ok(host, 8080)
            assert not client.tcp_ok(host, 8082)
