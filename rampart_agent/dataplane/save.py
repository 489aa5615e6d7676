"""Reading `iptables-save [-c]` output (our chains, the built-in chains, their counters),
`iptables -S CHAIN -v` (one chain with its counters) and `ipset save` (sets, elements and
their counters)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rampart_agent.dataplane.base import LiveElement, LiveFamily, LiveRule, LiveSet, LiveTable
from rampart_agent.ruleset import BUILTINS, CHAIN_PREFIX, SET_PREFIX, _target, rule_comment

COUNTER_RE = re.compile(r"^\[(\d+):(\d+)\]\s+")
LISTED_COUNTER_RE = re.compile(r" -c (\d+) (\d+)(?= |$)")  # `iptables -S CHAIN -v`
# `add NAME VALUE [timeout T] [packets N bytes M] [comment "C"]` (ipset save)
ELEMENT_RE = re.compile(
    r'add (\S+) (\S+)(?:.*? packets (\d+) bytes (\d+))?(?:.*? comment "((?:[^"\\]|\\.)*)")?'
)


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


def parse_ipset_save(text: str, names: Iterable[str] | None = None) -> dict[str, LiveSet]:
    """Our sets (`names`, or every rpt- set) in `ipset save` output, with their elements
    (and counters, for sets created with `counters`)."""
    wanted = set(names) if names is not None else None
    sets: dict[str, LiveSet] = {}
    for line in text.splitlines():
        if line.startswith("add "):
            name = line[4 : line.find(" ", 4)]
            live = sets.get(name)
            if live is None:
                continue
            parts = line.split(" ", 8)
            if len(parts) == 9 and parts[3] == "packets" and parts[7] == "comment":
                # the usual spelling of a lookup set's element: no regex needed
                comment = parts[8][1:-1] if "\\" not in parts[8] else None
                if comment is not None and parts[8].endswith('"'):
                    element = LiveElement(parts[2], comment, int(parts[4]), int(parts[6]))
                    live.elements.append(element)
                    continue
            match = ELEMENT_RE.match(line)
            if match:
                packets, nbytes = int(match.group(3) or 0), int(match.group(4) or 0)
                live.elements.append(LiveElement(match.group(2), match.group(5), packets, nbytes))
        elif line.startswith("create "):
            name = line.split(None, 2)[1]
            if name.startswith(SET_PREFIX) and (wanted is None or name in wanted):
                sets[name] = LiveSet(line)
    return sets
