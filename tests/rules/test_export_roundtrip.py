"""Round trip (hypothesis): random valid documents → import → export → the same document,
and importing that export (or the document again) changes nothing."""

from __future__ import annotations

import copy
import ipaddress
from datetime import UTC, datetime

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import PolicyDocument, values
from compiler.document import fallback_rule_id
from rules.exporter import export_document, render
from rules.importer import import_document, load_text
from tests.support.documents import canonical

pytestmark = pytest.mark.django_db

V4 = ipaddress.ip_network("198.18.0.0/15")
V6 = ipaddress.ip_network("2001:2::/48")
TEXT = st.text(
    st.characters(whitelist_categories=("L", "N"), whitelist_characters=" -_.,:/()"), max_size=40
)
IFACES = st.sampled_from(["eth0", "eth1", "ens3", "br-lan", "wg+", "veth+"])
STATES = ["new", "established", "related", "invalid", "untracked"]
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@st.composite
def address_value(draw, family: int) -> str:
    net = V4 if family == 4 else V6
    width = 32 if family == 4 else 128
    offset = draw(st.integers(0, 2 ** (width - net.prefixlen) - 1))
    first = net.network_address + offset
    kind = draw(st.sampled_from(["host", "cidr", "range"]))
    if kind == "host":
        return str(first)
    if kind == "cidr":
        plen = draw(st.integers(net.prefixlen, width))
        return str(ipaddress.ip_network(f"{first}/{plen}", strict=False))
    last = min(int(first) + draw(st.integers(0, 500)), int(net.broadcast_address))
    return f"{first}-{ipaddress.ip_address(last)}"


def ports(draw, n: int) -> list[str]:
    out = []
    for _ in range(n):
        lo = draw(st.integers(1, 65535))
        hi = draw(st.one_of(st.none(), st.integers(lo, 65535)))
        out.append(str(lo) if hi is None or hi == lo else f"{lo}-{hi}")
    return out


@st.composite
def documents(draw) -> dict:
    names = iter(
        draw(
            st.lists(
                st.from_regex(r"[a-z][a-z0-9_.-]{0,12}", fullmatch=True),
                min_size=40,
                max_size=40,
                unique=True,
            )
        )
    )
    fam: dict[str, set[int]] = {}
    doc: dict = {
        "version": 1,
        "addresses": [],
        "address_groups": [],
        "services": [],
        "service_groups": [],
        "rulesets": [],
        "device_groups": [],
        "devices": [],
    }
    for _ in range(draw(st.integers(0, 5))):
        f = draw(st.sampled_from([4, 6]))
        name = next(names)
        entry = {"name": name, "value": draw(address_value(f))}
        if draw(st.booleans()):
            entry["description"] = draw(TEXT)
        doc["addresses"].append(entry)
        fam[name] = {f}
    for _ in range(draw(st.integers(0, 3))):
        name = next(names)
        pool = list(fam)
        members = draw(st.lists(st.sampled_from(pool), max_size=3)) if pool else []
        members += [
            draw(address_value(draw(st.sampled_from([4, 6]))))
            for _ in range(draw(st.integers(0 if members else 1, 2)))
        ]
        fam[name] = set().union(
            *[
                fam.get(m) or {ipaddress.ip_network(m.split("-")[0], strict=False).version}
                for m in members
            ]
        )
        doc["address_groups"].append({"name": name, "members": members})
    proto_of: dict[str, set[str]] = {}
    for _ in range(draw(st.integers(0, 4))):
        name = next(names)
        proto = draw(st.sampled_from(["tcp", "udp", "icmp", "any"]))
        entry = {"name": name, "protocol": proto}
        if proto in ("tcp", "udp"):
            entry["ports"] = ports(draw, draw(st.integers(0, 3)))
            if draw(st.booleans()):
                entry["source_ports"] = ports(draw, 1)
        if proto == "icmp" and draw(st.booleans()):
            entry["icmp_type"] = draw(
                st.sampled_from(["echo-request", "echo-reply", "time-exceeded"])
            )
        doc["services"].append(entry)
        proto_of[name] = {proto}
    for _ in range(draw(st.integers(0, 2))):
        if not proto_of:
            break
        name = next(names)
        members = draw(st.lists(st.sampled_from(list(proto_of)), min_size=1, max_size=3))
        proto_of[name] = set().union(*[proto_of[m] for m in members])
        doc["service_groups"].append({"name": name, "members": members})
    for _ in range(draw(st.integers(0, 3))):
        rs = {"name": next(names), "rules": []}
        if draw(st.booleans()):
            rs["description"] = draw(TEXT)
        for _ in range(draw(st.integers(0, 6))):
            rs["rules"].append(draw(rules(fam, proto_of)))
        if draw(st.booleans()):
            rs["nat"] = [draw(nat_rule())]
        if draw(st.booleans()):
            rs["assertions"] = [
                {
                    "chain": "input",
                    "protocol": "tcp",
                    "source": "198.18.0.5",
                    "destination": "198.18.1.10",
                    "dport": draw(st.integers(1, 65535)),
                    "expect": draw(st.sampled_from(["accept", "drop", "reject"])),
                }
            ]
        doc["rulesets"].append(rs)
    rs_names = [r["name"] for r in doc["rulesets"]]
    for _ in range(draw(st.integers(0, 2))):
        doc["device_groups"].append(
            {
                "name": next(names),
                "rulesets": draw(st.lists(st.sampled_from(rs_names), unique=True))
                if rs_names
                else [],
            }
        )
    group_names = [g["name"] for g in doc["device_groups"]]
    for _ in range(draw(st.integers(0, 2))):
        dev = {
            "name": next(names),
            "address": draw(address_value(draw(st.sampled_from([4, 6]))))
            .split("-")[0]
            .split("/")[0],
            "agent_port": draw(st.integers(1, 65535)),
            "groups": draw(st.lists(st.sampled_from(group_names), unique=True))
            if group_names
            else [],
            "rulesets": draw(st.lists(st.sampled_from(rs_names), unique=True)) if rs_names else [],
            "default_policy": {
                c: draw(st.sampled_from(["accept", "drop", "reject"]))
                for c in ("input", "forward", "output")
            },
            "management_sources": draw(
                st.lists(
                    st.sampled_from(
                        [a["name"] for a in doc["addresses"]] + ["198.18.0.1", "2001:2::1"]
                    ),
                    min_size=1,  # none would leave the device without anti-lockout: refused
                    max_size=2,
                )
            ),
            "stateful": draw(st.booleans()),
            "allow_loopback": draw(st.booleans()),
        }
        doc["devices"].append(dev)
    return doc


@st.composite
def rules(draw, fam: dict[str, set[int]], proto_of: dict[str, set[str]]) -> dict:
    family = draw(st.sampled_from([None, 4, 6]))
    usable = [n for n, f in fam.items() if family is None or f == {family} or len(f) == 2]
    rule: dict = {
        "chain": draw(st.sampled_from(["input", "output", "forward"])),
        "action": draw(st.sampled_from(["accept", "drop", "reject"])),
    }
    if draw(st.booleans()):
        rule["id"] = str(draw(st.uuids()))
    if family is not None:
        for side in ("sources", "destinations"):
            picks = draw(st.lists(st.sampled_from(usable), max_size=2)) if usable else []
            if not picks or draw(st.booleans()):
                picks.append(draw(address_value(family)))
            rule[side] = picks
            if draw(st.booleans()):
                rule[f"{side}_negate"] = True
    svc_ok = [n for n, p in proto_of.items() if family != 6 or "icmp" not in p]
    if svc_ok and draw(st.booleans()):
        rule["services"] = draw(st.lists(st.sampled_from(svc_ok), min_size=1, max_size=2))
    elif draw(st.booleans()):
        proto = draw(
            st.sampled_from(
                ["tcp", "udp", "any"]
                + (["icmp"] if family != 6 else [])
                + (["icmpv6"] if family != 4 else [])
            )
        )
        rule["protocol"] = proto
        if proto in ("tcp", "udp"):
            rule["dports"] = ports(draw, draw(st.integers(0, 2)))
            if draw(st.booleans()):
                rule["sports"] = ports(draw, 1)
        elif proto in ("icmp", "icmpv6") and draw(st.booleans()):
            rule["icmp_type"] = draw(
                st.sampled_from(["echo-request", "echo-reply", "time-exceeded"])
            )
    if rule["chain"] != "output" and draw(st.booleans()):
        rule["in_interface"] = draw(IFACES)
    if rule["chain"] != "input" and draw(st.booleans()):
        rule["out_interface"] = draw(IFACES)
    if draw(st.booleans()):
        rule["states"] = draw(
            st.lists(st.sampled_from(STATES), min_size=1, max_size=2, unique=True)
        )
    if draw(st.booleans()):
        rule["log"] = True
        if draw(st.booleans()):
            rule["log_prefix"] = draw(st.from_regex(r"[A-Za-z0-9 :_-]{1,20}", fullmatch=True))
    if draw(st.booleans()):
        count, unit = draw(st.integers(1, 999)), draw(st.sampled_from(list(UNIT_SECONDS)))
        rule["rate_limit"] = f"{count}/{unit}"
        most = min(10000, values.LIMIT_SPAN_MAX * count // UNIT_SECONDS[unit])  # kernel bound
        if most < values.LIMIT_BURST_DEFAULT or draw(st.booleans()):
            rule["burst"] = draw(st.integers(1, most))
    if draw(st.booleans()):
        rule["comment"] = draw(TEXT)
    if draw(st.booleans()):
        rule["enabled"] = False
    if draw(st.booleans()):
        rule["expires_at"] = (
            draw(st.datetimes(datetime(2026, 1, 1), datetime(2030, 1, 1)))
            .replace(microsecond=0, tzinfo=UTC)
            .isoformat()
            .replace("+00:00", "Z")
        )
    return rule


@st.composite
def nat_rule(draw) -> dict:
    kind = draw(st.sampled_from(["dnat", "snat", "masquerade"]))
    nat: dict = {"type": kind}
    if draw(st.booleans()):
        nat["id"] = str(draw(st.uuids()))
    if kind == "dnat":
        nat.update(
            in_interface="eth0",
            protocol="tcp",
            dports=ports(draw, 1),
            to=f"198.18.1.{draw(st.integers(1, 254))}:{draw(st.integers(1, 65535))}",
        )
    elif kind == "snat":
        nat.update(
            out_interface="eth1",
            to=f"198.18.2.{draw(st.integers(1, 254))}",
            sources=["198.18.3.0/24"],
        )
    else:
        nat.update(out_interface="eth0", destinations=["198.18.9.0/24"])
    return nat


def as_stored(doc: dict) -> dict:
    """What the database keeps: rules get their stable fallback id; NAT rules without one
    get a random id, which the comparison leaves out."""
    doc = copy.deepcopy(doc)
    for rs in doc["rulesets"]:
        for i, rule in enumerate(rs["rules"]):
            rule.setdefault("id", fallback_rule_id(rs["name"], "rules", i))
    return doc


def drop_generated_nat_ids(exported: dict, original: dict) -> dict:
    given = {rs["name"]: [("id" in n) for n in rs.get("nat", [])] for rs in original["rulesets"]}
    for rs in exported.get("rulesets", []):
        for nat, has_id in zip(rs.get("nat", []), given.get(rs["name"], []), strict=True):
            if not has_id:
                nat.pop("id")
    return exported


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(doc=documents(), fmt=st.sampled_from(["yaml", "json"]))
def test_import_export_round_trip(doc, fmt):
    PolicyDocument.from_dict(doc)  # the generator makes valid documents only
    with transaction.atomic():
        plan = import_document(doc)
        assert not plan.updated["rules"] and not any(plan.deleted.values())
        exported = load_text(render(export_document(), fmt), fmt=fmt)
        got = drop_generated_nat_ids(canonical(exported), doc)
        assert got == canonical(as_stored(doc))
        assert not import_document(doc).changed
        assert not import_document(exported).changed
        transaction.set_rollback(True)
