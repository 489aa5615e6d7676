"""The equivalence check of onboarding: kernel verdicts of the original dump versus tracer
verdicts of the imported rule set, for a sample of real TCP/UDP probes.

The server namespace holds the original rules (written there by ufw, firewalld, shorewall
or iptables-restore); the client probes it. A probe "got through" when the connection (TCP)
or the echo (UDP) succeeded, which needs the request accepted in the server's INPUT chain
(state new) and the answer accepted in its OUTPUT chain (state established): the tracer
is asked exactly those two questions about the imported rule set.
"""

from __future__ import annotations

import copy
import ipaddress
import subprocess
from dataclasses import dataclass

from django.utils import timezone

from compiler import CompileOptions, PolicyDocument, Tracer
from compiler.lower import lower_device
from compiler.tracer import Packet
from rules.exporter import export_document
from rules.importer import import_document
from rules.onboarding import OnboardingResult, translate_iptables_save

ROOT_DUMPS = (
    ["iptables-legacy-save"],
    ["iptables-nft-save"],
    ["ip6tables-legacy-save"],
    ["ip6tables-nft-save"],
    ["nft", "list", "ruleset"],
    ["ipset", "save"],
)


def root_firewall() -> list[str]:
    """The root namespace's whole firewall, to prove a test left it alone."""
    return [subprocess.run(cmd, capture_output=True, text=True).stdout for cmd in ROOT_DUMPS]


@dataclass(frozen=True)
class Probe:
    proto: str
    port: int
    sport: int


def probes(tcp: list[int], udp: list[int], sport_base: int = 41000) -> list[Probe]:
    """Fixed source ports, so the tracer sees the very packets; a new round on the same
    hosts needs a new `sport_base` (conntrack remembers the earlier flows as established)."""
    return [Probe("tcp", p, sport_base + i) for i, p in enumerate(tcp)] + [
        Probe("udp", p, sport_base + 500 + i) for i, p in enumerate(udp)
    ]


def kernel_verdicts(client, server, sample: list[Probe]) -> list[bool]:
    listener = server.listen(
        tcp=sorted({p.port for p in sample if p.proto == "tcp"}),
        udp=sorted({p.port for p in sample if p.proto == "udp"}),
    )
    try:
        return client.probe(
            [
                {"proto": p.proto, "host": server.addr4, "port": p.port, "sport": p.sport}
                for p in sample
            ],
            timeout=0.5,
        )
    finally:
        listener.kill()
        listener.wait(timeout=5)


def import_onboarded(result: OnboardingResult, server_addr: str) -> PolicyDocument:
    """Import the translated document (plus a device using its rule set) into the database
    and read the policy back out of it, as a deploy would."""
    doc = copy.deepcopy(result.document)
    ruleset = doc["rulesets"][0]["name"]
    doc["devices"] = [
        {
            "name": "onboarded-host",
            "address": server_addr,
            "rulesets": [ruleset],
            "stateful": False,
            "allow_loopback": False,
            # required (anti-lockout); an address no probe comes from, so no verdict changes
            "management_sources": ["198.19.255.254"],
            "default_policy": {"input": "accept", "forward": "accept", "output": "accept"},
        }
    ]
    import_document(doc, actor="test:onboarding")
    return PolicyDocument.from_dict(export_document())


def tracer_verdicts(doc: PolicyDocument, client, server, sample: list[Probe]) -> list[bool]:
    tracer = Tracer(lower_device(doc, "onboarded-host", CompileOptions(), timezone.now()))
    c, s = ipaddress.ip_address(client.addr4), ipaddress.ip_address(server.addr4)
    out = []
    for p in sample:
        request = Packet("input", p.proto, c, s, p.sport, p.port, None, server.dev, None, "new")
        answer = Packet(
            "output", p.proto, s, c, p.port, p.sport, None, None, server.dev, "established"
        )
        out.append(
            tracer.trace(request).verdict == "accept" and tracer.trace(answer).verdict == "accept"
        )
    return out


def check_equivalence(
    client, server, sample: list[Probe], ipset_text: str = "", ruleset: str = "onboarded"
) -> tuple[OnboardingResult, dict, str]:
    """Translate the server's live dump, import it, and compare verdicts probe by probe."""
    dump = server.run("iptables-save").stdout
    result = translate_iptables_save(dump, ipset_text, ruleset=ruleset)
    doc = import_onboarded(result, server.addr4)
    kernel = kernel_verdicts(client, server, sample)
    traced = tracer_verdicts(doc, client, server, sample)
    table = {f"{p.proto}/{p.port}": (k, t) for p, k, t in zip(sample, kernel, traced, strict=True)}
    return result, table, dump
