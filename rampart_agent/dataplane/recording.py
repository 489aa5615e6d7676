"""The pretend dataplane: interprets our restore payloads in memory (demos without root,
fleet benchmarks, fast tests), enforcing what the kernel would."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from rampart_agent.dataplane.base import Dataplane, DataplaneError, LiveFamily, LiveRule, LiveTable
from rampart_agent.ruleset import BUILTINS, CHAIN_PREFIX, PORT_RANGE_RE, _target, rule_comment
from rampart_agent.state import atomic_write

_TABLE_BUILTINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

_BUILTIN_TARGETS = {
    "ACCEPT",
    "DROP",
    "REJECT",
    "RETURN",
    "LOG",
    "MASQUERADE",
    "DNAT",
    "SNAT",
    "REDIRECT",
    "MARK",
    "CT",
    "NOTRACK",
    "NFLOG",
    "TCPMSS",
    "CONNMARK",
}


class RecordingDataplane(Dataplane):
    """Does everything but touch the kernel: interprets our payloads in memory.

    It enforces what the kernel would (unknown chain, jump to a missing chain, deleting a
    referenced chain, chain loops), so the apply engine's all-or-nothing logic is exercised
    without root. `fail_on(payload)` may return an error text to simulate a kernel refusal.
    """

    name = "recording"
    backend = "recording"

    def __init__(
        self,
        fail_on: Callable[[str, str], str | None] | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.tables: dict[str, dict[str, dict[str, list[str]]]] = {"v4": {}, "v6": {}}
        self.sets: dict[str, list[str]] = {}
        self.payloads: list[tuple[str, str]] = []  # (kind, payload) in order
        self.fail_on = fail_on
        self._lock = threading.Lock()
        # With a path, the pretend kernel survives between CLI runs (demo: apply, status).
        self.path = Path(path) if path else None
        if self.path and self.path.exists():
            saved = json.loads(self.path.read_text())
            self.tables, self.sets = saved["tables"], saved["sets"]

    def _save(self) -> None:
        if self.path:
            atomic_write(self.path, json.dumps({"tables": self.tables, "sets": self.sets}).encode())

    def restore(self, family: str, payload: str) -> None:
        with self._lock:
            self.payloads.append((f"iptables-{family}", payload))
            if self.fail_on and (err := self.fail_on(family, payload)):
                raise DataplaneError(err)
            tables = self.tables[family]
            work: dict[str, list[str]] | None = None
            tname = ""
            for lineno, line in enumerate(payload.splitlines(), 1):
                if line.startswith("*"):
                    tname = line[1:]
                    base = tables.get(tname) or {b: [] for b in _TABLE_BUILTINS.get(tname, ())}
                    work = {k: list(v) for k, v in base.items()}
                elif line == "COMMIT":
                    assert work is not None
                    _check_table(work, lineno)
                    tables[tname] = work
                    work = None
                    self._save()
                elif work is not None:
                    try:
                        _interpret(work, line)
                    except (KeyError, ValueError, IndexError) as exc:
                        raise DataplaneError(f"line {lineno} failed: {exc}") from exc

    def read(self, family: str, tables: Iterable[str] | None = None) -> LiveFamily:
        with self._lock:
            out: LiveFamily = {}
            for tname, chains in self.tables[family].items():
                if tables is not None and tname not in tables:
                    continue
                lt = LiveTable()
                for name, rules in chains.items():
                    if name not in BUILTINS and not name.startswith(CHAIN_PREFIX):
                        continue
                    live = [LiveRule(r, rule_comment(r), _target(r)) for r in rules]
                    (lt.builtins if name in BUILTINS else lt.chains)[name] = live
                out[tname] = lt
            return out

    def ipset_list(self) -> dict[str, int]:
        with self._lock:
            return {n: _kernel_entries(v[1:]) for n, v in self.sets.items()}

    def ipset_restore(self, payload: str) -> None:
        with self._lock:
            self.payloads.append(("ipset", payload))
            if self.fail_on and (err := self.fail_on("ipset", payload)):
                raise DataplaneError(err)
            for line in payload.splitlines():
                parts = line.split()
                if not parts:
                    continue
                verb, name = parts[0], parts[1]
                if verb == "create":
                    self.sets.setdefault(name, [line])
                elif verb == "add":  # as with -exist: an element added again is updated
                    lines = self.sets[name]
                    same = [i for i, x in enumerate(lines[1:], 1) if x.split()[2] == parts[2]]
                    if same:
                        lines[same[0]] = line
                    else:
                        lines.append(line)
                elif verb == "del":
                    self.sets[name] = [x for x in self.sets[name] if x.split()[2] != parts[2]]
                elif verb == "rename":
                    if parts[2] in self.sets:
                        raise DataplaneError(f"set {parts[2]} already exists")
                    self.sets[parts[2]] = self.sets.pop(name)
                elif verb == "destroy":
                    self.sets.pop(name, None)
                elif verb == "swap":
                    self.sets[name], self.sets[parts[2]] = self.sets[parts[2]], self.sets[name]
            self._save()

    def ipset_destroy(self, names: Iterable[str]) -> list[str]:
        with self._lock:
            used = {
                m
                for fam in self.tables.values()
                for chains in fam.values()
                for rules in chains.values()
                for r in rules
                for m in re.findall(r"--match-set\s+(\S+)", r)
            }
            failed = []
            for n in names:
                if n in used:
                    failed.append(n)
                else:
                    self.sets.pop(n, None)
            self._save()
            return failed

    def facts(self) -> dict[str, str]:
        return {"iptables_version": "recording", "backend": "recording"}


def _kernel_entries(adds: list[str]) -> int:
    """Elements the kernel would hold for these add lines (a port range: one per port)."""
    return len(adds) + sum(
        int(hi) - int(lo) for line in adds for lo, hi in PORT_RANGE_RE.findall(line)
    )


def _interpret(work: dict[str, list[str]], line: str) -> None:
    if line.startswith(":"):
        name = line[1:].split()[0]
        work[name] = []
        return
    parts = line.split(None, 2)
    op, chain = parts[0], parts[1]
    rest = parts[2] if len(parts) > 2 else ""
    rules = work[chain]
    if op == "-A":
        rules.append(rest)
    elif op == "-I":
        pos, _, spec = rest.partition(" ")
        index = int(pos) - 1
        if not 0 <= index <= len(rules):
            raise IndexError("Index of insertion too big")
        rules.insert(index, spec)
    elif op == "-D":
        if rest.isdecimal():
            del rules[int(rest) - 1]
        else:
            rules.remove(rest)  # ValueError: "Bad rule (does a matching rule exist?)"
    elif op == "-F":
        rules.clear()
    elif op == "-X":
        if rules:
            raise ValueError(f"chain {chain} is not empty")
        for other in work.values():
            if any(_target(r) == chain for r in other):
                raise ValueError(f"chain {chain} is still referenced")
        del work[chain]
    else:
        raise ValueError(f"unsupported operation {op}")


def _check_table(work: dict[str, list[str]], lineno: int) -> None:
    graph: dict[str, set[str]] = {}
    for name, rules in work.items():
        for r in rules:
            target = _target(r)
            if not target or target in _BUILTIN_TARGETS:
                continue
            if target not in work:
                raise DataplaneError(f"line {lineno} failed: chain {target} does not exist")
            graph.setdefault(name, set()).add(target)
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise DataplaneError(f"line {lineno} failed: Too many links (loop via {nxt})")
            if nxt not in state:
                visit(nxt)
        state[node] = 2

    for node in list(graph):
        if node not in state:
            visit(node)
