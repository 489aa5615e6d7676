"""Health probes in the policy document: `devices[].probes`, `device_groups[].probes`."""

from __future__ import annotations

import pytest

from compiler import DocumentError, PolicyDocument, check_document
from compiler.document.parse_probes import worst_case_seconds
from compiler.validate import probe_errors

from . import cases

PROBES = [
    {"type": "tcp", "host": "198.18.0.1", "port": 22, "timeout": 2},
    {"type": "icmp", "host": "gw.example.net"},
    {"type": "http", "url": "https://198.18.0.1:8443/health?deep=1", "expect_status": 204},
    {"type": "http", "url": "http://[2001:2::1]/", "timeout": 0.1},
]


def _doc(device_probes=None, group_probes=None) -> dict:
    data = cases.example()
    if device_probes is not None:
        data["devices"][0]["probes"] = device_probes
    if group_probes is not None:
        data["device_groups"][0]["probes"] = group_probes
    return data


def test_documents_without_probes_stay_valid_and_export_without_them():
    doc = PolicyDocument.from_dict(cases.example())
    assert all(d.probes == () for d in doc.devices)
    out = doc.to_dict()
    assert all("probes" not in d for d in out["devices"] + out.get("device_groups", []))


def test_probes_round_trip_in_canonical_form():
    doc = PolicyDocument.from_dict(_doc(PROBES, PROBES[:1]))
    out = doc.to_dict()
    # an http probe without a status expects 200, and says so
    assert out["devices"][0]["probes"] == [*PROBES[:3], {**PROBES[3], "expect_status": 200}]
    assert out["device_groups"][0]["probes"] == PROBES[:1]
    assert PolicyDocument.from_dict(out) == doc


def test_device_probes_fall_back_to_the_groups_in_group_order():
    data = _doc()
    data["device_groups"].append({"name": "other", "probes": [PROBES[1], PROBES[0]]})
    data["device_groups"][0]["probes"] = [PROBES[0]]
    data["devices"][0]["groups"] = [data["device_groups"][0]["name"], "other"]
    doc = PolicyDocument.from_dict(data)
    device = doc.devices[0]
    assert [p.label() for p in doc.device_probes(device)] == [
        "tcp 198.18.0.1:22",
        "icmp gw.example.net",
    ]
    own = PolicyDocument.from_dict(
        {**data, "devices": [{**data["devices"][0], "probes": PROBES[2:3]}]}
    )
    assert [p.to_dict() for p in own.device_probes(own.devices[0])] == PROBES[2:3]


@pytest.mark.parametrize(
    ("probe", "field", "words"),
    [
        ({"type": "tcp", "host": "198.18.0.1", "port": 65536}, "[1].port", "1..65535"),
        ({"type": "tcp", "host": "198.18.0.1", "port": True}, "[1].port", "port"),
        ({"type": "tcp", "host": "198.18.0.1"}, "[1].port", "required"),
        ({"type": "icmp"}, "[1].host", "required"),
        ({"type": "icmp", "host": "bad host"}, "[1].host", "host name"),
        ({"type": "icmp", "host": "-c9"}, "[1].host", "host name"),
        ({"type": "icmp", "host": "198.18.0.1", "timeout": 30.5}, "[1].timeout", "0.1..30"),
        ({"type": "icmp", "host": "198.18.0.1", "timeout": "2"}, "[1].timeout", "seconds"),
        ({"type": "icmp", "host": "198.18.0.1", "url": "http://x/"}, "[1].url", "unknown key"),
        ({"type": "http", "url": "file:///etc/passwd"}, "[1].url", "scheme"),
        ({"type": "http", "url": "https:///nohost"}, "[1].url", "no host"),
        ({"type": "http", "url": "http://h:99999/"}, "[1].url", "not a valid URL"),
        ({"type": "http", "url": "http://h/ x"}, "[1].url", "without spaces"),
        (
            {"type": "http", "url": "http://h/", "expect_status": 600},
            "[1].expect_status",
            "100..599",
        ),
        ({"type": "ping", "host": "h"}, "[1].type", "tcp, icmp, http"),
        ("tcp h:22", "[1]", "mapping"),
    ],
)
def test_bad_probes_are_refused_with_their_path(probe, field, words):
    for data, path in (
        (_doc([PROBES[0], probe]), "devices[web-1].probes"),
        (_doc(None, [PROBES[0], probe]), "device_groups[web].probes"),
    ):
        with pytest.raises(DocumentError) as err:
            PolicyDocument.from_dict(data)
        messages = {e.path: e.message for e in err.value.errors}
        assert path + field in messages, messages
        assert words in messages[path + field]


def test_probe_list_itself_is_checked():
    with pytest.raises(DocumentError) as err:
        PolicyDocument.from_dict(_doc({"type": "tcp"}))
    assert [e.path for e in err.value.errors] == ["devices[web-1].probes"]
    with pytest.raises(DocumentError) as err:
        PolicyDocument.from_dict(_doc([PROBES[1]] * 11))
    assert "at most 10" in err.value.errors[0].message


def test_check_document_refuses_bad_probes():
    report = check_document(_doc([{"type": "tcp", "host": "198.18.0.1", "port": 0}]), now=cases.NOW)
    assert not report.ok
    assert [e.path for e in report.errors] == ["devices[web-1].probes[0].port"]


def test_probe_errors_key_each_field():
    assert probe_errors(PROBES) == {}
    assert probe_errors(None) == {}
    assert probe_errors([{"type": "tcp", "host": "h", "port": 0}, {}], field="override") == {
        "override[0].port": ["must be a port 1..65535"],
        "override[1].type": ["must be one of tcp, icmp, http"],
    }


def test_worst_case_seconds_bounds_the_agents_probe_time():
    assert worst_case_seconds([]) == 0
    probes = [
        {"type": "tcp", "host": "h", "port": 1, "timeout": 1},
        {"type": "icmp", "host": "h"},
        {"type": "http", "url": "http://h/", "timeout": 2},
    ]
    assert worst_case_seconds(probes) == 1 + (2 + 2) + 3 * 2 + 3 * 0.5
