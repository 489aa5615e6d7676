"""Errors are types: what went wrong can be told without reading the message."""

from __future__ import annotations

import pytest

from compiler import (
    CompileError,
    CompilerError,
    DocumentError,
    FamilyMismatch,
    FieldError,
    Packet,
    PacketError,
    PolicyDocument,
    UnknownName,
    compile_device,
)

from . import cases


def document_error(data: dict) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        PolicyDocument.from_dict(data)
    return info.value


def test_references_to_undefined_objects_are_unknown_names():
    exc = document_error(
        {
            "version": 1,
            "service_groups": [{"name": "web", "members": ["https"]}],
            "rulesets": [
                {
                    "name": "rs",
                    "rules": [
                        {"chain": "input", "action": "accept", "sources": ["office"]},
                        {"chain": "input", "action": "accept", "services": ["ssh"]},
                    ],
                }
            ],
            "device_groups": [{"name": "g", "rulesets": ["nope"]}],
            "devices": [{"name": "d", "groups": ["missing"], "rulesets": ["rs"]}],
        }
    )
    unknown = exc.of_type(UnknownName)
    assert len(unknown) == len(exc.errors) == 5
    assert sorted((e.kind, e.name) for e in unknown) == [
        ("device group", "missing"),
        ("reference", "office"),
        ("rule set", "nope"),
        ("service", "https"),
        ("service", "ssh"),
    ]
    by_name = {e.name: e for e in unknown}
    assert by_name["ssh"].to_dict() == {
        "path": "rulesets[rs].rules[1].services[0]",
        "message": "unknown service 'ssh'",
    }


def test_ipv4_and_ipv6_mixed_is_a_family_mismatch():
    exc = document_error(
        {
            "version": 1,
            "rulesets": [
                {
                    "name": "rs",
                    "rules": [
                        {
                            "chain": "input",
                            "action": "drop",
                            "sources": ["198.18.0.1"],
                            "destinations": ["2001:2::1"],
                        }
                    ],
                    "nat": [{"type": "dnat", "sources": ["2001:2::1"], "to": "198.18.0.1"}],
                }
            ],
        }
    )
    assert [type(e) for e in exc.errors] == [FamilyMismatch, FamilyMismatch]
    assert [e.path for e in exc.errors] == [
        "rulesets[rs].rules[0].destinations",
        "rulesets[rs].nat[0].to",
    ]


def test_an_unknown_device_is_an_unknown_name_in_a_compile_error():
    doc = PolicyDocument.from_dict(cases.minimal())
    with pytest.raises(CompileError) as info:
        compile_device(doc, "ghost", now=cases.NOW)
    (error,) = info.value.errors
    assert isinstance(error, UnknownName) and (error.kind, error.name) == ("device", "ghost")
    assert error.to_dict() == {"path": "devices[ghost]", "message": "unknown device"}


def test_a_bad_packet_is_a_packet_error_and_a_value_error():
    with pytest.raises(PacketError) as info:
        Packet.from_params({"source": "198.18.0.1", "destination": "2001:2::1", "dport": "x"})
    exc = info.value
    assert isinstance(exc, ValueError) and isinstance(exc, CompilerError)
    assert [(type(e), e.path) for e in exc.errors] == [
        (FamilyMismatch, "destination"),
        (FieldError, "dport"),
    ]
    assert exc.errors[1].message == "invalid port 'x': 1-65535"
