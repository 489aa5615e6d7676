"""The agent applies what the real compiler (compiler, pure) produces."""

import datetime

import pytest

from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.engine import Engine
from rampart_agent.state import StateDir

compiler = pytest.importorskip("compiler")
NOW = datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC)


def doc(extra_rules=()):
    return {
        "version": 1,
        "addresses": [{"name": "office", "value": "198.18.0.0/24"}],
        "address_groups": [
            {
                "name": "big",
                "members": [f"198.18.{i // 200}.{i % 200 + 1}" for i in range(400)]
                + ["2001:2::/64"],
            }
        ],
        "services": [{"name": "https", "protocol": "tcp", "ports": ["443"]}],
        "rulesets": [
            {
                "name": "base",
                "rules": [
                    {
                        "chain": "input",
                        "action": "accept",
                        "sources": ["office"],
                        "services": ["https"],
                    },
                    {
                        "chain": "input",
                        "action": "accept",
                        "sources": ["big"],
                        "protocol": "udp",
                        "dports": ["53"],
                    },
                    *extra_rules,
                ],
            },
            {
                "name": "other",
                "rules": [
                    {"chain": "input", "action": "drop", "protocol": "tcp", "dports": ["25"]}
                ],
            },
        ],
        "device_groups": [{"name": "web", "rulesets": ["base", "other"]}],
        "devices": [
            {
                "name": "web-1",
                "address": "198.18.0.2",
                "groups": ["web"],
                "default_policy": {"input": "drop", "forward": "drop", "output": "accept"},
                "management_sources": ["198.18.0.1"],
            }
        ],
    }


def compile_bundle(data):
    parsed = compiler.PolicyDocument.from_dict(data)
    return compiler.compile_device(parsed, "web-1", now=NOW).to_dict()


def test_compiled_bundle_applies_without_drift_and_changes_incrementally(tmp_path):
    dp = RecordingDataplane()
    engine = Engine(StateDir(tmp_path), dp)
    engine.start()
    v1 = compile_bundle(doc())
    assert engine.apply({"bundle": v1, "version": 1, "confirm_timeout": 0})["result"] == "applied"
    assert dp.sets and dp.tables["v4"]["filter"]["INPUT"][0].endswith("-j RPT-INPUT")
    status = engine.status()
    assert not status["drift"]["drifted"], status["drift"]["diff"]
    n = len(dp.payloads)
    extra = {"chain": "input", "action": "accept", "protocol": "tcp", "dports": ["8443"]}
    v2 = compile_bundle(doc([extra]))
    engine.apply({"bundle": v2, "version": 2, "confirm_timeout": 0})
    changed = [p for kind, p in dp.payloads[n:] if kind.startswith("iptables")]
    assert changed and all(":RPT-INPUT " not in p for p in changed)  # only base's chain
    assert not engine.status()["drift"]["drifted"]
