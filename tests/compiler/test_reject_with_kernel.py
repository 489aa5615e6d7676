"""`reject_with` in a real kernel: each type loads, reads back as rendered (the agent
compares line by line), and answers a TCP connect with the error it stands for."""

from __future__ import annotations

import errno
import json
import sys

import pytest

from compiler import PolicyDocument, compile_device
from tests.support.netns import host_pair, needs_netns

from . import cases
from .kernel import DATAPLANES, NATIVE, load, rules_by_chain, saved_rules

pytestmark = needs_netns

# port → reject_with (None: the default), and the connect error each gives per family
PORTS = {
    7001: None,
    7002: "tcp-reset",
    7003: "icmp-admin-prohibited",
    7004: "icmp-host-unreachable",
    7005: "icmp-net-unreachable",
    7006: "icmp-host-prohibited",
}
ERRORS = {
    4: {
        7001: errno.ECONNREFUSED,
        7002: errno.ECONNREFUSED,
        7003: errno.EHOSTUNREACH,
        7004: errno.EHOSTUNREACH,
        7005: errno.ENETUNREACH,
        7006: errno.EHOSTUNREACH,
    },
    6: {
        7001: errno.ECONNREFUSED,
        7002: errno.ECONNREFUSED,
        7003: errno.EACCES,
        7004: errno.EHOSTUNREACH,
        7005: errno.ENETUNREACH,
        7006: errno.EACCES,
    },
}
CONNECT = """
import json, socket, sys
out = {}
for host, port in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(3)
    out[f"{host} {port}"] = s.connect_ex((host, port))
print(json.dumps(out))
"""


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_each_type_answers_as_it_says(dataplane):
    rules = []
    for port, kind in PORTS.items():
        rule = {"chain": "input", "action": "reject", "protocol": "tcp", "dports": [str(port)]}
        if kind:
            rule["reject_with"] = kind
        rules.append(rule)
    doc = {
        "version": 1,
        "rulesets": [{"name": "rj", "rules": rules}],
        "devices": [{"name": "srv", "rulesets": ["rj"], "default_policy": {"input": "accept"}}],
    }
    bundle = compile_device(PolicyDocument.from_dict(doc), "srv", now=cases.NOW)
    with host_pair("cprj") as (client, server):
        server.listen(tcp=list(PORTS))
        load(server, bundle, dataplane)
        for family, text in ((4, bundle.iptables_v4), (6, bundle.iptables_v6)):
            if dataplane != NATIVE:  # read back as iptables-save prints it
                assert saved_rules(server, family) == rules_by_chain(text)
        targets = [(host, port) for host in (server.addr4, server.addr6) for port in PORTS]
        got = json.loads(client.run(sys.executable, "-c", CONNECT, json.dumps(targets)).stdout)
        for family, host in ((4, server.addr4), (6, server.addr6)):
            for port, code in ERRORS[family].items():
                assert got[f"{host} {port}"] == code, (family, port, got)
