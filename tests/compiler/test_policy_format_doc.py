"""The spec (docs/policy-format.md) names every key the parser accepts, so it cannot fall
behind the parser silently: a key added to compiler/document/keys.py (or to the key sets
of the parsers beside it) fails here until the spec describes it."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from compiler import per_source
from compiler.assertions import device_assertions
from compiler.document import PolicyDocument, keys
from compiler.document.parse_devices import _DEVICE_KEYS
from compiler.document.parse_probes import _KEYS as PROBE_KEYS
from compiler.document.parse_scope import SCOPE_KINDS
from compiler.document.parse_zones import _ZONE_KEYS

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "policy-format.md"


def _key_sets() -> dict[str, tuple[str, ...]]:
    """Every key set of keys.py (each module-level tuple of strings: DOCUMENT, RULE, NAT,
    ASSERTION and any added later), and the parsers' own sets."""
    found = {
        name: value
        for name, value in vars(keys).items()
        if name.isupper()
        and isinstance(value, tuple)
        and value
        and all(isinstance(k, str) for k in value)
    }
    found["ZONE"] = tuple(sorted(_ZONE_KEYS))
    found["DEVICE"] = tuple(sorted(_DEVICE_KEYS))
    found["PROBE"] = tuple(sorted({k for ks in PROBE_KEYS.values() for k in ks}))
    found["SCOPE"] = SCOPE_KINDS
    found["RATE_LIMIT_PER_SOURCE"] = per_source.KEYS
    found.update(_inline_key_sets())
    return found


def _inline_key_sets() -> dict[str, tuple[str, ...]]:
    """The key sets written inline as `self.mapping(item, path, {"name", ...})` in the
    document parsers (objects, rule sets, device groups, default_policy)."""
    found = {}
    for module in sorted((ROOT / "compiler" / "document").glob("parse*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "mapping"
                and len(node.args) >= 3
                and isinstance(node.args[2], ast.Set | ast.Tuple | ast.List)
            ):
                words = [e.value for e in node.args[2].elts if isinstance(e, ast.Constant)]
                found[f"{module.stem}:{node.lineno}"] = tuple(sorted(map(str, words)))
    return found


KEY_SETS = _key_sets()


def mentioned(key: str, text: str) -> bool:
    """`key` stands in the spec as a key: in backquotes (`key`, `key: …`) or as a YAML
    key of the example (`key:`), not as part of a longer word."""
    return re.search(rf"(?<![\w-]){re.escape(key)}(?=[`:])", text) is not None


def test_keys_py_has_the_key_sets() -> None:
    assert {"DOCUMENT", "RULE", "NAT", "ASSERTION"} <= KEY_SETS.keys()
    inline = {k for name, ks in KEY_SETS.items() if ":" in name for k in ks}
    assert {"source_ports", "members", "assertions"} <= inline  # services, groups, rule sets


@pytest.mark.parametrize(
    ("kind", "key"), [(kind, key) for kind, ks in KEY_SETS.items() for key in ks]
)
def test_spec_names_every_key(kind: str, key: str) -> None:
    assert mentioned(key, SPEC.read_text()), f"{kind} key {key!r} is not in {SPEC.name}"


def test_a_missing_key_is_found_missing() -> None:
    """The check itself can fail: a key the spec lacks, or only as part of a longer key."""
    text = SPEC.read_text()
    assert not mentioned("rate_limit_per_destination", text)
    assert not mentioned("limit_per_source", text)  # only inside rate_limit_per_source
    assert mentioned("rate_limit_per_source", text)


def test_the_example_is_a_valid_document_whose_assertions_hold() -> None:
    """The spec's example parses (every key in it is one the parser accepts) and its
    assertion holds on its device."""
    example = re.search(r"```yaml\n(.*?)```", SPEC.read_text(), re.S)
    assert example is not None
    doc = PolicyDocument.from_dict(yaml.safe_load(example.group(1)))
    results = device_assertions(doc, "web-1", now=datetime(2026, 12, 1, tzinfo=UTC))
    assert results and all(r.passed for r in results), [r.message() for r in results]
