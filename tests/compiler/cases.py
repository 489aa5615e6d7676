"""Policy documents the compiler tests share: every one of them is golden-tested and loaded
into a real kernel (test_kernel.py), so a case added here is checked both ways."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import yaml

from compiler import Bundle, PolicyDocument, compile_device

DATA = Path(__file__).with_name("data")
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def example() -> dict:
    return yaml.safe_load((DATA / "example.yaml").read_text())


def minimal() -> dict:
    return {
        "version": 1,
        "devices": [
            {
                "name": "bare",
                "stateful": False,
                "allow_loopback": False,
                "default_policy": {"input": "accept", "forward": "accept", "output": "accept"},
            }
        ],
    }


def sets_and_ports() -> dict:
    """Groups above the ipset threshold, negated lists, >15 ports, reject defaults."""
    v4 = [f"198.18.{i}.{j}" for i in (20, 21) for j in range(1, 21, 2)]
    v6 = [f"2001:2:0:30::{j:x}" for j in range(1, 40, 2)]
    ports = [str(p) for p in range(1000, 1040, 2)] + ["2000-2100", "3000-3001"]
    return {
        "version": 1,
        "address_groups": [
            {"name": "many", "members": v4 + v6},
            {"name": "few", "members": ["198.18.40.0/24", "198.18.41.0/24", "2001:2:0:40::/64"]},
        ],
        "services": [
            {"name": "lots", "protocol": "tcp", "ports": ports},
            {"name": "udp-lots", "protocol": "udp", "ports": ports[:18]},
            {"name": "ping6", "protocol": "icmpv6", "icmp_type": "echo-request"},
        ],
        "service_groups": [{"name": "mixed", "members": ["lots", "udp-lots", "ping6"]}],
        "rulesets": [
            {
                "name": "big",
                "rules": [
                    {
                        "chain": "input",
                        "action": "accept",
                        "sources": ["many"],
                        "services": ["mixed"],
                    },
                    {
                        "chain": "input",
                        "action": "drop",
                        "sources": ["few"],
                        "sources_negate": True,
                        "destinations": ["many"],
                        "destinations_negate": True,
                        "protocol": "udp",
                        "sports": ["1-1023", "2049"],
                        "dports": ["53"],
                    },
                    {
                        "chain": "output",
                        "action": "reject",
                        "destinations": ["few"],
                        "protocol": "tcp",
                        "dports": ["25"],
                        "states": ["new", "untracked"],
                    },
                    {
                        "chain": "forward",
                        "action": "accept",
                        "in_interface": "veth+",
                        "out_interface": "eth0",
                        "rate_limit": "100/minute",
                    },
                ],
            }
        ],
        "devices": [
            {
                "name": "fw",
                "rulesets": ["big"],
                "default_policy": {"input": "reject", "forward": "drop", "output": "reject"},
                "management_sources": ["few"],
                "agent_port": 9443,
            }
        ],
    }


def nat() -> dict:
    return {
        "version": 1,
        "addresses": [
            {"name": "lan", "value": "198.18.50.0/24"},
            {"name": "lan6", "value": "2001:2:0:50::/64"},
        ],
        "rulesets": [
            {
                "name": "gw",
                "rules": [{"chain": "forward", "action": "accept", "sources": ["lan", "lan6"]}],
                "nat": [
                    {
                        "type": "dnat",
                        "in_interface": "eth0",
                        "protocol": "tcp",
                        "dports": ["80", "8080"],
                        "to": "198.18.50.10:8000",
                    },
                    {
                        "type": "dnat",
                        "chain": "output",
                        "protocol": "udp",
                        "dports": ["53"],
                        "to": "[2001:2:0:50::53]:5353",
                    },
                    {
                        "type": "snat",
                        "sources": ["lan"],
                        "out_interface": "eth0",
                        "to": "198.18.51.1",
                    },
                    {"type": "masquerade", "sources": ["lan6"], "out_interface": "eth0"},
                    {"type": "masquerade", "out_interface": "eth1", "enabled": False},
                ],
            }
        ],
        "device_groups": [{"name": "gateways", "rulesets": ["gw"]}],
        "devices": [{"name": "gw-1", "groups": ["gateways"], "stateful": True}],
    }


def big_group(n: int = 100_000) -> dict:
    # every other address of 2001:2::/112 and up, so nothing collapses (an IPv4 group
    # this large cannot stay inside 198.18.0.0/15: at most 65,536 separate blocks fit)
    base = int(ipaddress.IPv6Address("2001:2::"))
    members = [str(ipaddress.IPv6Address(base + 2 * i)) for i in range(n)]
    return {
        "version": 1,
        "address_groups": [{"name": "huge", "members": members}],
        "rulesets": [
            {"name": "block", "rules": [{"chain": "input", "action": "drop", "sources": ["huge"]}]}
        ],
        "devices": [{"name": "edge", "rulesets": ["block"]}],
    }


CASES = {
    "example": (example, "web-1"),
    "minimal": (minimal, "bare"),
    "sets_and_ports": (sets_and_ports, "fw"),
    "nat": (nat, "gw-1"),
}


def compile_case(name: str, **kwargs) -> Bundle:
    """The bundle of a case's device, compiled at NOW."""
    build, device = CASES[name]
    return compile_device(PolicyDocument.from_dict(build()), device, now=NOW, **kwargs)
