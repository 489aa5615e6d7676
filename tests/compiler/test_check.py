"""Assertions and `check_document`, the engine of the validate endpoint and rampart_check."""

from __future__ import annotations

from compiler import PolicyDocument, check_document, compile_device, device_assertions

from . import cases


def test_example_passes_with_its_assertions():
    report = check_document(cases.example(), now=cases.NOW)
    assert report.ok and not report.errors
    assert [a.passed for a in report.assertions] == [True, True]
    assert {a.device for a in report.assertions} == {"web-1"}


def test_a_broken_assertion_is_named():
    data = cases.example()
    data["rulesets"][0]["assertions"][1]["expect"] = "accept"
    report = check_document(data, now=cases.NOW)
    assert not report.ok and not report.errors
    (failed,) = [a for a in report.assertions if not a.passed]
    assert failed.label == "web-baseline.assertions[1] (no-mysql)"
    assert (failed.expect, failed.got, failed.decided_by) == (
        "accept",
        "drop",
        "web-baseline rule 5",
    )
    assert "FAILS: got drop" in failed.message()


def test_assertions_run_on_every_device_that_uses_the_rule_set():
    data = cases.example()
    data["devices"].append(
        {"name": "web-2", "groups": ["web"], "default_policy": {"input": "accept"}}
    )
    data["rulesets"][0]["assertions"].append(
        {
            "name": "closed",
            "chain": "input",
            "protocol": "udp",
            "source": "198.18.7.1",
            "destination": "198.18.1.10",
            "dport": 9999,
            "expect": "drop",
        }
    )
    report = check_document(data, now=cases.NOW)
    failed = [(a.name, a.device) for a in report.assertions if not a.passed]
    assert failed == [("closed", "web-2")]  # web-2's default accepts it
    doc = PolicyDocument.from_dict(data)
    assert all(a.passed for a in device_assertions(doc, "web-1", now=cases.NOW))


def test_unused_rule_set_assertions_run_on_the_rule_set_alone():
    data = {
        "version": 1,
        "rulesets": [
            {
                "name": "solo",
                "rules": [
                    {"chain": "input", "action": "accept", "protocol": "tcp", "dports": ["443"]}
                ],
                "assertions": [
                    {
                        "chain": "input",
                        "protocol": "tcp",
                        "source": "198.18.0.1",
                        "destination": "198.18.0.2",
                        "dport": 443,
                        "expect": "accept",
                    },
                    {
                        "chain": "input",
                        "protocol": "any",
                        "source": "198.18.0.1",
                        "destination": "198.18.0.2",
                        "expect": "drop",
                    },
                    {
                        "chain": "output",
                        "protocol": "udp",
                        "source": "2001:2::1",
                        "destination": "2001:2::2",
                        "dport": 53,
                        "expect": "accept",
                    },
                ],
            }
        ],
    }
    report = check_document(data, now=cases.NOW)
    assert [(a.device, a.passed) for a in report.assertions] == [(None, True)] * 3
    assert [w.kind for w in report.warnings] == ["unused"]


def test_invalid_document_reports_errors_only():
    data = cases.example()
    data["rulesets"][0]["rules"][0]["dports"] = ["70000"]
    report = check_document(data, now=cases.NOW)
    assert not report.ok and report.assertions == [] and report.warnings == []
    out = report.to_dict()
    assert (
        out["ok"] is False and out["errors"][0]["rule_id"] == "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1"
    )


def test_report_lines_and_dict_are_complete():
    data = cases.example()
    data["rulesets"][0]["rules"].append(
        {
            "chain": "input",
            "action": "drop",
            "sources": ["198.18.0.7"],
            "services": ["https"],
            "destinations": ["web-1"],
            "states": ["new"],
            "in_interface": "eth0",
        }
    )
    report = check_document(data, now=cases.NOW)
    assert any(w.kind == "shadowed" for w in report.warnings)
    lines = report.lines()
    assert any(line.startswith("warning: web-baseline rule 10") for line in lines)
    assert set(report.to_dict()) == {"ok", "errors", "warnings", "assertions"}


def test_device_assertions_on_the_bundle_being_deployed():
    data = cases.example()
    data["rulesets"][0]["assertions"].append(
        {
            "name": "any-proto",
            "chain": "input",
            "protocol": "any",
            "source": "198.18.7.5",
            "destination": "198.18.1.10",
            "expect": "drop",
        }
    )
    doc = PolicyDocument.from_dict(data)
    bundle = compile_device(doc, "web-1", now=cases.NOW)
    results = device_assertions(doc, "web-1", now=cases.NOW, program=bundle.program)
    assert [(r.name, r.passed) for r in results] == [
        (None, True),
        ("no-mysql", True),
        ("any-proto", True),
    ]
