"""Policy assertions: packets with an expected verdict, checked with the tracer.

A rule set's assertions are checked on every device that uses the rule set (a deploy that
breaks one is refused, naming it); a rule set no device uses is checked on its own, as if
on a device with the default settings (input/forward drop, output accept, stateful, no
management sources).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from . import values as V
from .document import Assertion, Device, PolicyDocument
from .ir import Program
from .lower import CompileOptions, Lowerer
from .tracer import Packet, Tracer


@dataclass(frozen=True)
class AssertionResult:
    ruleset: str
    index: int
    name: str | None
    device: str | None  # None: checked on the rule set alone
    expect: str
    got: str
    decided_by: str
    rule_id: str | None

    @property
    def passed(self) -> bool:
        return self.expect == self.got

    @property
    def label(self) -> str:
        return f"{self.ruleset}.assertions[{self.index}]" + (f" ({self.name})" if self.name else "")

    def message(self) -> str:
        where = f"on {self.device}" if self.device else "on the rule set alone"
        outcome = "holds" if self.passed else f"FAILS: got {self.got}"
        return (
            f"{self.label} {where}: expect {self.expect}, {outcome} (decided by {self.decided_by})"
        )

    def to_dict(self) -> dict:
        return {
            "ruleset": self.ruleset,
            "index": self.index,
            "name": self.name,
            "device": self.device,
            "expect": self.expect,
            "got": self.got,
            "passed": self.passed,
            "decided_by": self.decided_by,
            "rule_id": self.rule_id,
            "message": self.message(),
        }


def assertion_packet(a: Assertion) -> Packet:
    icmp = V.parse_icmp_type(a.protocol, a.icmp_type) if a.icmp_type is not None else None
    return Packet(
        a.chain,
        a.protocol,
        ipaddress.ip_address(a.source),
        ipaddress.ip_address(a.destination),
        a.sport,
        a.dport,
        icmp,
        a.in_interface,
        a.out_interface,
        a.state,
    )


def _check(
    tracer: Tracer, rs_name: str, index: int, a: Assertion, device: str | None
) -> AssertionResult:
    if a.protocol == "any":  # not a packet: check both tcp and udp, first difference wins
        results = [
            _check(tracer, rs_name, index, Assertion(**{**_fields(a), "protocol": p}), device)
            for p in ("tcp", "udp")
        ]
        return next((r for r in results if not r.passed), results[0])
    result = tracer.trace(assertion_packet(a))
    decided = (
        f"{result.ruleset} rule {result.position}"
        if result.ruleset
        else result.tag.removeprefix("rpt:")
    )
    return AssertionResult(
        rs_name, index, a.name, device, a.expect, result.verdict, decided, result.rule_id
    )


def _fields(a: Assertion) -> dict:
    return {name: getattr(a, name) for name in Assertion.__slots__}


def device_assertions(
    doc: PolicyDocument,
    device_name: str,
    *,
    now: datetime,
    options: CompileOptions | None = None,
    program: Program | None = None,
) -> list[AssertionResult]:
    """The assertions of every rule set of a device, on that device's compiled policy.

    Pass `program=bundle.program` to check the very bundle about to be deployed.
    """
    device = doc.device(device_name)
    if program is None:
        program = Lowerer(doc, options or CompileOptions(), now).device(device)
    tracer = Tracer(program)
    out: list[AssertionResult] = []
    for rs in {rs.name: rs for rs in doc.device_rulesets(device)}.values():
        out.extend(_check(tracer, rs.name, i, a, device.name) for i, a in enumerate(rs.assertions))
    return out


def ruleset_assertions(
    doc: PolicyDocument, ruleset_name: str, *, now: datetime, options: CompileOptions | None = None
) -> list[AssertionResult]:
    """A rule set's assertions on the rule set alone (default device settings)."""
    rs = doc.ruleset(ruleset_name)
    if not rs.assertions:
        return []
    program = Lowerer(doc, options or CompileOptions(), now).device(
        Device(name=f"ruleset:{rs.name}", rulesets=(rs.name,))
    )
    tracer = Tracer(program)
    return [_check(tracer, rs.name, i, a, None) for i, a in enumerate(rs.assertions)]


def document_assertions(
    doc: PolicyDocument, *, now: datetime, options: CompileOptions | None = None
) -> list[AssertionResult]:
    """Every assertion: on each device using its rule set, or on the rule set alone."""
    out = []
    used: set[str] = set()
    for device in doc.devices:
        rulesets = doc.device_rulesets(device)
        used.update(rs.name for rs in rulesets)
        if any(rs.assertions for rs in rulesets):
            out.extend(device_assertions(doc, device.name, now=now, options=options))
    for rs in doc.rulesets:
        if rs.name not in used:
            out.extend(ruleset_assertions(doc, rs.name, now=now, options=options))
    return out
