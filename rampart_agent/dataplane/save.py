"""Reading `iptables-save [-c]` output (our chains, the built-in chains, their counters)
and `iptables -S CHAIN -v` (one chain with its counters)."""

from __future__ import annotations

import re

from rampart_agent.dataplane.base import LiveFamily, LiveRule, LiveTable
from rampart_agent.ruleset import BUILTINS, CHAIN_PREFIX, _target, rule_comment

COUNTER_RE = re.compile(r"^\[(\d+):(\d+)\]\s+")
LISTED_COUNTER_RE = re.compile(r" -c (\d+) (\d+)(?= |$)")  # `iptables -S CHAIN -v`


def parse_save(text: str) -> LiveFamily:
    """Parse `iptables-save [-c]` output, keeping RPT- chains and built-in chains only."""
    tables: LiveFamily = {}
    current: LiveTable | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), LiveTable())
        elif current is None or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name.startswith(CHAIN_PREFIX):
                current.chains.setdefault(name, [])
            elif name in BUILTINS:
                current.builtins.setdefault(name, [])
        else:
            packets = nbytes = 0
            match = COUNTER_RE.match(line)
            if match:
                packets, nbytes = int(match.group(1)), int(match.group(2))
                line = line[match.end() :]
            parts = line.split(None, 2)
            if len(parts) < 2 or parts[0] != "-A":
                continue
            chain, spec = parts[1], parts[2] if len(parts) > 2 else ""
            rule = LiveRule(spec, rule_comment(spec), _target(spec), packets, nbytes)
            if chain.startswith(CHAIN_PREFIX):
                current.chains.setdefault(chain, []).append(rule)
            elif chain in BUILTINS:
                current.builtins.setdefault(chain, []).append(rule)
    return tables


def parse_listed(text: str) -> list[LiveRule]:
    """The rules of one chain as `iptables -S CHAIN -v` lists them (`-c PACKETS BYTES`
    before the target)."""
    rules = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[0] != "-A":
            continue
        spec = parts[2]
        packets = nbytes = 0
        match = LISTED_COUNTER_RE.search(spec)
        if match:
            packets, nbytes = int(match.group(1)), int(match.group(2))
            spec = spec[: match.start()] + spec[match.end() :]
        rules.append(LiveRule(spec, rule_comment(spec), _target(spec), packets, nbytes))
    return rules
