"""Bundle formats the agent takes: 2 (linear) and 3 (set-compiled blocks) from the console,
and 1 as well from its own store."""

from __future__ import annotations

import pytest

from compiler import CompileOptions, PolicyDocument, compile_device
from rampart_agent.bundle import Bundle, BundleError
from rampart_contract.bundle_hash import bundle_hash
from tests.compiler import cases
from tests.compiler.test_blocks import _disjoint_rules, _doc_of


def _raw(set_compile: bool) -> dict:
    doc = PolicyDocument.from_dict(_doc_of(_disjoint_rules(12)))
    options = CompileOptions(set_compile=set_compile, set_min_rules=2)
    return compile_device(doc, "bare", options=options, now=cases.NOW).to_dict(rules=False)


def test_linear_bundles_stay_format_2_and_set_compiled_are_3():
    linear, sets = _raw(False), _raw(True)
    assert (linear["format"], sets["format"]) == (2, 3)
    for raw in (linear, sets):
        assert Bundle.parse(raw).raw["hash"] == raw["hash"]


@pytest.mark.parametrize("fmt", [1, 4])
def test_other_formats_are_refused_from_the_console(fmt):
    raw = _raw(True)
    raw["format"] = fmt
    raw["hash"] = bundle_hash(raw)
    with pytest.raises(BundleError, match="unsupported bundle format"):
        Bundle.parse(raw)


def test_stored_bundles_of_every_known_format_load():
    for fmt in (1, 2, 3):
        raw = _raw(fmt == 3)
        raw["format"] = fmt
        assert Bundle.parse(raw, verify_hash=False).raw["format"] == fmt
