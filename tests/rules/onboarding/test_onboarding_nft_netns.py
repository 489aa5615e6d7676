"""nftables hosts onboarded for real: firewalld with its default (nftables) backend and a
hand-written `inet` ruleset are loaded in an `rpt_` namespace, `nft -j list ruleset` is
onboarded and imported, and once the migrated bundle replaces the nft rules the same
connections (IPv4 and IPv6, a forwarded port included) get through."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from compiler import PolicyDocument, compile_device
from rules.onboarding import translate_iptables_save
from tests.compiler.kernel import load
from tests.support.netns import host_pair, needs_netns

from .equivalence import import_onboarded, root_firewall
from .hosts import firewalld_host, needs

pytestmark = [*needs_netns, pytest.mark.django_db, pytest.mark.slow]

PORTS = [22, 25, 80, 7000, 8080, 8081]
PLAIN = """\
table inet host {{
  set admins {{ type ipv4_addr; flags interval; elements = {{ {admin}, 198.19.9.0/24 }} }}
  chain input {{
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iif lo accept
    ct state invalid drop
    meta l4proto ipv6-icmp accept
    tcp dport 22 ip saddr @admins accept
    tcp dport 22 ip6 saddr {admin6} accept
    tcp dport {{ 80, 8080 }} counter accept
    tcp dport 25 log prefix "smtp " reject with tcp reset
  }}
}}
"""


@pytest.fixture
def root_untouched():
    before = root_firewall()
    yield
    assert root_firewall() == before, "the root namespace's firewall changed"


def reachable(client, server) -> dict[str, bool]:
    listener = server.listen(tcp=[p for p in PORTS if p != 8081])
    try:
        return {
            f"{host} {port}": client.tcp_ok(host, port, timeout=0.5)
            for host in (server.addr4, server.addr6)
            for port in PORTS
        }
    finally:
        listener.kill()
        listener.wait(timeout=5)


def migrate(client, server, ruleset: str):
    text = server.run("nft", "-j", "list", "ruleset").stdout
    before = reachable(client, server)
    result = translate_iptables_save(text, ruleset=ruleset)
    PolicyDocument.from_dict(result.document)
    items = json.loads(text)["nftables"]
    rules = {i for i, item in enumerate(items, start=1) if "rule" in item}
    done = set(result.translated) | set(result.nat_translated)
    assert rules <= done | {s.line for s in result.skipped}  # every rule accounted for
    doc = import_onboarded(result, server.addr4)
    bundle = compile_device(doc, "onboarded-host", now=timezone.now())
    server.run("nft", "flush", "ruleset")
    load(server, bundle)
    return result, before, reachable(client, server)


def test_plain_nftables_host(root_untouched):
    needs("nft")
    with host_pair("pcnp") as (client, server):
        script = PLAIN.format(admin=client.addr4, admin6=client.addr6)
        server.run("nft", "-f", "-", input=script)
        result, before, after = migrate(client, server, "nft-host")
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert before[f"{server.addr4} 22"] and before[f"{server.addr6} 22"]
    assert not before[f"{server.addr4} 25"] and not before[f"{server.addr4} 7000"]
    assert not result.losses()
    groups = result.document["address_groups"]
    assert groups[0]["name"] == "nft-host.host-admins"


def test_firewalld_nftables_backend(tmp_path, root_untouched):
    with host_pair("pcfj") as (client, server):
        firewalld_host(
            server,
            tmp_path,
            [
                "--add-service=ssh",
                "--add-port=80/tcp",
                "--add-forward-port=port=8081:proto=tcp:toport=8080",
                "--add-rich-rule=rule family=ipv4 source address=198.19.66.0/24 drop",
            ],
            backend="nftables",
        )
        assert server.run("iptables-save").stdout.count("-A ") == 0  # all of it in nft
        result, before, after = migrate(client, server, "fwd-nft")
    assert before[f"{server.addr4} 8081"] and before[f"{server.addr4} 22"]
    assert not before[f"{server.addr4} 7000"] and not before[f"{server.addr4} 8080"]
    # `ct status dnat accept` becomes `states: [dnat]`: the forwarded port is admitted, a
    # straight connection to its target (8080) is not, as on the original host
    assert after == before
    assert not [s for s in result.losses() if "dnat" in s.reason.lower()]
