"""Port forwards onboarded for real: firewalld (iptables backend) and shorewall write
their nat-table user chains in an `rpt_` namespace, the dump is onboarded (user chains
inlined, REDIRECT and a port-only DNAT imported as `redirect`, `--ctstate DNAT` and
`--ctorigdstport` as rules on the translated port), and once the migrated bundle replaces
the original rules the forwarded port still reaches the service behind it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from compiler import PolicyDocument, compile_device
from rules.onboarding import translate_iptables_save
from tests.compiler.kernel import load, reset
from tests.support.netns import host_pair, needs_netns

from .equivalence import import_onboarded, root_firewall
from .hosts import firewalld_host, shorewall_host

pytestmark = [*needs_netns, pytest.mark.django_db, pytest.mark.slow]

SERVICE = 8080


@pytest.fixture
def root_untouched():
    before = root_firewall()
    yield
    assert root_firewall() == before, "the root namespace's firewall changed"


def reachable(client, server, ports: list[int]) -> dict[int, bool]:
    listener = server.listen(tcp=[SERVICE])
    try:
        return {p: client.tcp_ok(server.addr4, p, timeout=0.5) for p in ports}
    finally:
        listener.kill()
        listener.wait(timeout=5)


def migrate(client, server, ruleset: str, ports: list[int]):
    dump = server.run("iptables-save").stdout
    before = reachable(client, server, ports)
    result = translate_iptables_save(dump, ruleset=ruleset)
    doc = import_onboarded(result, server.addr4)
    bundle = compile_device(doc, "onboarded-host", now=timezone.now())
    reset(server)
    load(server, bundle)
    return result, before, reachable(client, server, ports)


def test_firewalld_forward_port(tmp_path, root_untouched):
    with host_pair("pcfn") as (client, server):
        firewalld_host(
            server,
            tmp_path,
            [
                "--add-service=ssh",
                f"--add-forward-port=port=8081:proto=tcp:toport={SERVICE}",
                "--add-forward-port=port=9090:proto=tcp:toport=80:toaddr=198.18.200.10",
            ],
        )
        result, before, after = migrate(client, server, "fwd-host", [8081, 8082])
    nat = result.document["rulesets"][0]["nat"]
    assert [(n["type"], n["dports"], n["to"]) for n in nat] == [
        ("redirect", ["8081"], "8080"),
        ("dnat", ["9090"], "198.18.200.10:80"),
    ]
    PolicyDocument.from_dict(result.document)
    assert before == {8081: True, 8082: False}
    assert after == before


def test_shorewall_redirect(tmp_path, root_untouched):
    with host_pair("pcsn") as (client, server):
        shorewall_host(
            server,
            tmp_path,
            zones="fw\tfirewall\nnet\tipv4\n",
            interfaces=f"?FORMAT 2\nnet\t{server.dev}\ttcpflags,nosmurfs,routeback\n",
            policy="$FW\tnet\tACCEPT\nnet\tall\tDROP\nall\tall\tREJECT\n",
            rules=f"?SECTION NEW\nACCEPT\tnet\t$FW\ttcp\t22\nREDIRECT\tnet\t{SERVICE}\ttcp\t8088\n",
        )
        result, before, after = migrate(client, server, "sw-host", [8088, 8089, SERVICE])
    nat = result.document["rulesets"][0]["nat"]
    assert [(n["type"], n["dports"], n["to"]) for n in nat] == [("redirect", ["8088"], "8080")]
    assert not [s for s in result.losses() if "nat" in s.reason or "ctorig" in s.reason]
    # 8080 itself: shorewall admits only connections redirected to it, and so does the
    # migrated rule (states: [dnat]; no other DNAT reaches 8080: not wider, a plain note)
    assert before == {8088: True, 8089: False, SERVICE: False}
    assert after == before
    assert any("states: [dnat]" in n.reason for n in result.notes)
