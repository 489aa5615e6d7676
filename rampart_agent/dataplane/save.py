"""Reading `iptables-save [-c]` output (our chains, the built-in chains, their counters),
`iptables -S CHAIN -v` (one chain with its counters) and `ipset save` (sets, elements and
their counters)."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping

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


def parse_ipset_save(
    text: str, names: Iterable[str] | None = None, keys: Mapping[str, Collection[str]] | None = None
) -> dict[str, LiveSet]:
    """Our sets (`names`, or every rpt- set) in `ipset save` output, with their elements
    (and counters, for sets created with `counters`). `keys`: of the sets it names, only
    these elements are wanted (the counts a one-rule change takes: each line found with
    one `str.find` instead of parsing the set's 4k lines); the others' are left out."""
    wanted = set(names) if names is not None else None
    sets: dict[str, LiveSet] = {}
    keys = keys or {}
    for line in text.splitlines() if not keys else _lines_of_interest(text, wanted, keys):
        if line.startswith("add "):
            name = line[4 : line.find(" ", 4)]
            live = sets.get(name)
            if live is not None and (element := _element(line)) is not None:
                live.elements.append(element)
        elif line.startswith("create "):
            name = line.split(None, 2)[1]
            if name.startswith(SET_PREFIX) and (wanted is None or name in wanted):
                sets[name] = LiveSet(line)
    return sets


def _lines_of_interest(
    text: str, wanted: set[str] | None, keys: Mapping[str, Collection[str]]
) -> Iterator[str]:
    """The create lines and, for a set in `keys`, the add lines of those elements alone;
    every line of the other sets. A set's create line comes before its add lines."""
    start = 0 if text.startswith("create ") else text.find("\ncreate ") + 1
    while start > 0 or text.startswith("create "):
        nxt = text.find("\ncreate ", start)
        stop = len(text) if nxt < 0 else nxt
        eol = text.find("\n", start, stop)
        eol = stop if eol < 0 else eol
        create = text[start:eol]
        yield create
        name = (create.split(None, 2) + ["", ""])[1]
        if name in keys:
            for key in keys[name]:
                found = _find_add(text, f"\nadd {name} {key}", eol, stop)
                if found is not None:
                    yield found
        elif wanted is None or name in wanted:
            yield from text[eol + 1 : stop].split("\n")
        if nxt < 0:
            return
        start = nxt + 1


def _find_add(text: str, head: str, start: int, stop: int) -> str | None:
    """The line starting with `head` and then a blank or its end, between start and stop."""
    at = text.find(head, start, stop)
    while at >= 0:
        after = at + len(head)
        if after >= stop or text[after] in " \n":
            eol = text.find("\n", after, stop)
            return text[at + 1 : stop if eol < 0 else eol]
        at = text.find(head, after, stop)
    return None


def _element(line: str) -> LiveElement | None:
    """One `add` line of `ipset save` as an element with its counters and comment."""
    parts = line.split(" ", 8)
    if len(parts) == 9 and parts[3] == "packets" and parts[7] == "comment":
        # the usual spelling of a lookup set's element: no regex needed
        comment = parts[8][1:-1] if "\\" not in parts[8] else None
        if comment is not None and parts[8].endswith('"'):
            return LiveElement(parts[2], comment, int(parts[4]), int(parts[6]))
    match = ELEMENT_RE.match(line)
    if match is None:
        return None
    packets, nbytes = int(match.group(3) or 0), int(match.group(4) or 0)
    return LiveElement(match.group(2), match.group(5), packets, nbytes)
