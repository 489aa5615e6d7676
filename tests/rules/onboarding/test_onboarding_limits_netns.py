"""Per-source limits onboarded for real: a ufw `limit` (ufw writes it in an `rpt_`
namespace) and a hand-written `--hashlimit-above` drop are imported as
`rate_limit_per_source`, and the migrated bundle, loaded in place of the original rules,
lets the same connections through: a source's first ones, not the one over its limit,
and another source still."""

from __future__ import annotations

import json
import sys

import pytest
from django.utils import timezone

from compiler import PolicyDocument, compile_device
from rules.onboarding import translate_iptables_save
from tests.compiler.kernel import load, reset
from tests.support.netns import host_pair, needs_netns

from .equivalence import import_onboarded, root_firewall
from .hosts import ufw_host

pytestmark = [*needs_netns, pytest.mark.django_db, pytest.mark.slow]

PORT = 2222
# connects one after the other from a given source address; True = connected
CONNECT = """
import json, socket, sys
out = []
for source, host, port in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET)
    s.bind((source, 0))
    s.settimeout(0.5)
    out.append(s.connect_ex((host, port)) == 0)
    s.close()
print(json.dumps(out))
"""
HASHLIMIT_ABOVE = """\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 2222 -m conntrack --ctstate NEW -m hashlimit --hashlimit-above 1/hour --hashlimit-burst 3 --hashlimit-mode srcip --hashlimit-name ssh -j DROP
-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT
COMMIT
"""


@pytest.fixture
def root_untouched():
    before = root_firewall()
    yield
    assert root_firewall() == before, "the root namespace's firewall changed"


def connects(client, server, tries: int) -> list[bool]:
    """`tries` connects from the client's address, then one from a second address."""
    second = client.addr4.rsplit(".", 1)[0] + ".3"
    client.run("ip", "addr", "replace", f"{second}/24", "dev", client.dev)
    plan = [(client.addr4, server.addr4, PORT)] * tries + [(second, server.addr4, PORT)]
    listener = server.listen(tcp=[PORT])
    try:
        out = client.run(sys.executable, "-c", CONNECT, json.dumps(plan)).stdout
    finally:
        listener.kill()
        listener.wait(timeout=5)
    return json.loads(out)


def migrated(client, server, result, tries: int) -> list[bool]:
    """Import the onboarded rule set, replace the original rules with its bundle, probe."""
    doc = import_onboarded(result, server.addr4)
    bundle = compile_device(doc, "onboarded-host", now=timezone.now())
    reset(server)
    load(server, bundle)
    return connects(client, server, tries)


def test_ufw_limit_keeps_its_meaning(tmp_path, root_untouched):
    with host_pair("pclm") as (client, server):
        ufw_host(server, tmp_path, [["limit", f"{PORT}/tcp"]])
        dump = server.run("iptables-save").stdout
        before = connects(client, server, 7)
        result = translate_iptables_save(dump, ruleset="ufw-limit")
        PolicyDocument.from_dict(result.document)
        limited = [
            r for r in result.document["rulesets"][0]["rules"] if "rate_limit_per_source" in r
        ]
        assert [r["rate_limit_per_source"] for r in limited] == [{"rate": "10/minute", "burst": 5}]
        assert not [s for s in result.losses() if "recent" in s.text or "limit" in s.text]
        reset(server)
        after = migrated(client, server, result, 7)
    # ufw: 5 new connections of a source in 30 s, the 6th refused; another source gets in
    assert before == [True] * 5 + [False, False, True], before
    assert after == before


def test_hashlimit_above_drop_keeps_its_meaning(root_untouched):
    with host_pair("pchl") as (client, server):
        reset(server)
        server.run("iptables-restore", input=HASHLIMIT_ABOVE)
        before = connects(client, server, 5)
        result = translate_iptables_save(server.run("iptables-save").stdout, ruleset="hl")
        rules = result.document["rulesets"][0]["rules"]
        assert rules[1]["rate_limit_per_source"] == {"rate": "1/hour", "burst": 3}
        assert (rules[1]["action"], rules[2]["action"]) == ("accept", "drop")
        assert not result.losses()
        reset(server)
        after = migrated(client, server, result, 5)
    assert before == [True] * 3 + [False, False, True], before
    assert after == before
