"""Rampart's policy compiler: pure Python, no Django.

policy dict → `PolicyDocument` (document/, the one parser) → names resolved
(resolve.py) → neutral chains (lower/, ir.py) → iptables/ipset text (render_*.py) →
`Bundle` (bundle.py). The tracer walks the same chains the renderer writes; validate.py
checks single objects with the same parser; errors.py holds the error types.
"""

from __future__ import annotations

from datetime import datetime

from .analysis import Finding, analyse_device, analyse_document, analyse_ruleset
from .assertions import AssertionResult, device_assertions, document_assertions
from .bundle import Bundle, build_bundle, with_nft
from .check import Report, check_document, check_parsed
from .document import PolicyDocument
from .errors import (
    CompileError,
    CompilerError,
    DocumentError,
    FamilyMismatch,
    FieldError,
    PacketError,
    UnknownName,
)
from .gcpause import gc_paused
from .lower import CompileOptions, lower_device
from .tracer import Packet, Tracer, TraceResult

__all__ = [
    "AssertionResult",
    "Bundle",
    "CompileError",
    "CompileOptions",
    "CompilerError",
    "DocumentError",
    "FamilyMismatch",
    "FieldError",
    "Finding",
    "Packet",
    "PacketError",
    "PolicyDocument",
    "Report",
    "TraceResult",
    "Tracer",
    "UnknownName",
    "analyse_device",
    "analyse_document",
    "analyse_ruleset",
    "check_document",
    "check_parsed",
    "compile_device",
    "device_assertions",
    "document_assertions",
    "trace",
    "with_nft",
]


def compile_device(
    doc: PolicyDocument, device_name: str, *, options: CompileOptions | None = None, now: datetime
) -> Bundle:
    """The bundle of one device at time `now` (rules expired by then are left out)."""
    with gc_paused():
        program = lower_device(doc, device_name, options or CompileOptions(), now)
        return build_bundle(program)


def trace(
    doc: PolicyDocument,
    device_name: str,
    packet: Packet,
    *,
    options: CompileOptions | None = None,
    now: datetime,
) -> TraceResult:
    """The verdict the device's compiled policy gives `packet`, and the rule that decided."""
    program = lower_device(doc, device_name, options or CompileOptions(), now)
    return Tracer(program).trace(packet)
