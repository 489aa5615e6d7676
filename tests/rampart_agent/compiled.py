"""Bundles the real compiler makes, written for the agent CLI (kept apart from agentns.py,
which needs no compiler)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from compiler import CompileOptions, PolicyDocument, compile_device, with_nft
from tests.rampart_agent.agentns import write


def bundle_file(doc: dict, path: Path, options: CompileOptions | None = None) -> str:
    """Device `srv` of `doc` compiled now (with its `nft` script), written to `path`."""
    compiled = compile_device(
        PolicyDocument.from_dict(doc), "srv", options=options, now=datetime.now(UTC)
    )
    return write(path, with_nft(compiled).to_dict(rules=False))


def one_rule_bundle(rule: dict, path: Path) -> str:
    """`bundle_file` of a device `srv` holding `rule` alone, input dropped by default."""
    doc = {
        "version": 1,
        "rulesets": [{"name": "one", "rules": [rule]}],
        "devices": [{"name": "srv", "rulesets": ["one"], "default_policy": {"input": "drop"}}],
    }
    return bundle_file(doc, path)
