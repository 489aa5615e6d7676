"""The differential suite's verdict probe (tests/support/verdicts.py) tells the four
outcomes apart on a real kernel: accepted, a TCP reset, an ICMP error, a drop."""

from __future__ import annotations

import json
import sys

from tests.support.netns import host_pair, needs_netns

from .differential import VERDICTS

pytestmark = needs_netns

RULES = """\
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 2 -j REJECT --reject-with tcp-reset
-A INPUT -p tcp -m tcp --dport 3 -j REJECT --reject-with icmp-port-unreachable
-A INPUT -p tcp -m tcp --dport 4 -j REJECT --reject-with icmp-admin-prohibited
-A INPUT -p tcp -m tcp --dport 5 -j DROP
-A INPUT -p udp -m udp --dport 3 -j REJECT
-A INPUT -p udp -m udp --dport 5 -j DROP
-A INPUT -s {other} -p icmp -j REJECT
-A INPUT -s {dropped} -p icmp -j DROP
COMMIT
"""
RULES6 = """\
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 3 -j REJECT --reject-with icmp6-port-unreachable
-A INPUT -p tcp -m tcp --dport 5 -j DROP
COMMIT
"""


def test_the_four_verdicts_are_told_apart():
    with host_pair("pcvd") as (client, server):
        base = client.addr4.rsplit(".", 1)[0]
        other, dropped = f"{base}.5", f"{base}.6"
        client.run("ip", "addr", "add", f"{other}/24", "dev", client.dev)
        client.run("ip", "addr", "add", f"{dropped}/24", "dev", client.dev)
        server.run("iptables-restore", input=RULES.format(other=other, dropped=dropped))
        server.run("ip6tables-restore", input=RULES6)
        server.run("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0")
        server.listen(tcp=[1, 2, 3, 4, 5], udp=[1, 3, 5])
        c4, s4, c6, s6 = client.addr4, server.addr4, client.addr6, server.addr6
        probes = [{"proto": "tcp", "src": c4, "dst": s4, "port": p} for p in (1, 2, 3, 4, 5)]
        probes += [{"proto": "udp", "src": c4, "dst": s4, "port": p} for p in (1, 3, 5)]
        probes += [{"proto": "icmp", "src": s, "dst": s4} for s in (c4, other, dropped)]
        probes += [{"proto": "tcp", "src": c6, "dst": s6, "port": p} for p in (1, 3, 5)]
        probes += [{"proto": "icmp", "src": c6, "dst": s6}]
        wire = [p | {"sport": 30000 + i, "id": 30000 + i} for i, p in enumerate(probes)]
        out = client.run(sys.executable, VERDICTS, "0.5", input=json.dumps(wire)).stdout
    ok, rst, icmp, drop = "accepted", "refused-reset", "rejected-icmp", "dropped-timeout"
    assert json.loads(out) == [
        *(ok, rst, icmp, icmp, drop),  # tcp 1-5
        *(ok, icmp, drop),  # udp 1, 3, 5
        *(ok, icmp, drop),  # echo from the client, `other`, `dropped`
        *(ok, icmp, drop),  # tcp 1, 3, 5 over IPv6
        ok,  # echo over IPv6
    ]
