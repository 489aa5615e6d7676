"""The native nftables dataplane: one `nft -f` transaction per apply into Rampart's own
table, `table inet rampart` (compiler/render_nft.py writes the script, the bundle's `nft`
field carries it).

The script deletes and recreates the table in one transaction, so the kernel holds the old
policy or the new one, never a mix, and no other table (Docker's, kube-proxy's,
iptables-nft's, the admin's) is read or touched. Reads (`nft -j list table inet rampart`)
are translated into the iptables-shaped `LiveFamily` the drift and counter code compares
with the bundle: owned chain `filter4_RPT-INPUT` is chain `RPT-INPUT` of v4's filter
table, the base chain `filter_input` holds v4's and v6's INPUT jumps (told apart by their
`meta nfproto`). A rule's `text` is its expressions as canonical JSON without the counter
values (stable across reads: what text drift compares).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from rampart_agent.dataplane.base import (
    Dataplane,
    DataplaneError,
    LiveElement,
    LiveFamily,
    LiveRule,
    LiveSet,
    LiveTable,
)
from rampart_agent.dataplane.iptables import IptablesDataplane
from rampart_agent.ruleset import SET_PREFIX
from rampart_agent.runner import CommandError, Runner
from rampart_contract.naming import NFT_TABLE

TABLE = NFT_TABLE
BACKEND = "nft-native"
# the base chains compiler/render_nft.py writes -> (IR table, built-in chain)
BASE_CHAINS = {
    "filter_input": ("filter", "INPUT"),
    "filter_forward": ("filter", "FORWARD"),
    "filter_output": ("filter", "OUTPUT"),
    "nat_prerouting": ("nat", "PREROUTING"),
    "nat_output": ("nat", "OUTPUT"),
    "nat_postrouting": ("nat", "POSTROUTING"),
}
SNAPSHOT_TTL = 1.0  # seconds a listing answers further reads (see NftDataplane.read_all)
EMPTY_SCRIPT = f"table inet {TABLE}\ndelete table inet {TABLE}\n"
OWNED_RE = re.compile(r"^(filter|nat)([46])_(.+)$")
_VERDICTS = {
    "accept": "ACCEPT",
    "drop": "DROP",
    "reject": "REJECT",
    "return": "RETURN",
    "dnat": "DNAT",
    "snat": "SNAT",
    "masquerade": "MASQUERADE",
    "redirect": "REDIRECT",
}
_NFPROTO = {"ipv4": "v4", "ipv6": "v6"}


def _target(expr: list[dict[str, Any]]) -> str | None:
    """The iptables name of what a rule does (a jump names the chain as the IR does)."""
    logs = False
    for stmt in expr:
        for key in ("jump", "goto"):
            if key in stmt:
                owned = OWNED_RE.match(str(stmt[key].get("target", "")))
                return owned.group(3) if owned else str(stmt[key].get("target"))
        for key, name in _VERDICTS.items():
            if key in stmt:
                return name
        logs = logs or "log" in stmt
    return "LOG" if logs else None


def _counts(expr: list[dict[str, Any]]) -> tuple[int, int]:
    for stmt in expr:
        counter = stmt.get("counter")
        if isinstance(counter, dict):
            return int(counter.get("packets", 0)), int(counter.get("bytes", 0))
    return 0, 0


def _nfproto(expr: list[dict[str, Any]]) -> str | None:
    """The family a base-chain rule is limited to (`meta nfproto ipv4`), None: both."""
    for stmt in expr:
        match = stmt.get("match")
        if match and match.get("left") == {"meta": {"key": "nfproto"}}:
            return _NFPROTO.get(str(match.get("right")))
    return None


def live_rule(rule: dict[str, Any]) -> LiveRule:
    expr = rule.get("expr", [])
    text = json.dumps(
        [s if "counter" not in s else {"counter": None} for s in expr],
        sort_keys=True,
        separators=(",", ":"),
    )
    packets, nbytes = _counts(expr)
    return LiveRule(text, rule.get("comment"), _target(expr), packets, nbytes)


def _elem_size(elem: Any) -> int:
    """Kernel elements of one nft element as ipset counts them: a port range is one
    element per port (the sets' `entries` in the bundle are ipset's)."""
    val = elem.get("elem", {}).get("val") if isinstance(elem, dict) and "elem" in elem else elem
    parts = val.get("concat") if isinstance(val, dict) and "concat" in val else None
    if parts is None:
        return 1
    size = 1
    for part in parts:
        if isinstance(part, dict) and "range" in part and isinstance(part["range"][0], int):
            size *= int(part["range"][1]) - int(part["range"][0]) + 1
    return size


def parse_table(doc: dict[str, Any]) -> tuple[dict[str, LiveFamily], list[dict[str, Any]]]:
    """`nft -j list table inet rampart` -> (family -> LiveFamily, the set objects)."""
    fams: dict[str, LiveFamily] = {"v4": {}, "v6": {}}
    sets: list[dict[str, Any]] = []
    for item in doc.get("nftables", []):
        if "set" in item:
            sets.append(item["set"])
        elif "chain" in item:
            name = item["chain"]["name"]
            owned = OWNED_RE.match(name)
            if owned:
                table, fam, chain = owned.groups()
                fams[f"v{fam}"].setdefault(table, LiveTable()).chains.setdefault(chain, [])
            elif name in BASE_CHAINS:
                table, builtin = BASE_CHAINS[name]
                for fam in fams.values():
                    fam.setdefault(table, LiveTable()).builtins.setdefault(builtin, [])
        elif "rule" in item:
            rule = item["rule"]
            name = rule["chain"]
            owned = OWNED_RE.match(name)
            if owned:
                table, fam, chain = owned.groups()
                lt = fams[f"v{fam}"].setdefault(table, LiveTable())
                lt.chains.setdefault(chain, []).append(live_rule(rule))
            elif name in BASE_CHAINS:
                table, builtin = BASE_CHAINS[name]
                only = _nfproto(rule.get("expr", []))
                for key, fam in fams.items():
                    if only in (None, key):
                        lt = fam.setdefault(table, LiveTable())
                        lt.builtins.setdefault(builtin, []).append(live_rule(rule))
    return fams, sets


def element_tags(
    sets: list[dict[str, Any]], wanted: set[str] | None = None
) -> dict[str, list[int]]:
    """Set element counters summed per rule uuid (from each element's `rpt:<uuid>:` tag);
    with `wanted`, only of the elements whose first kernel element (`_first_live_key`) is
    one of these."""
    out: dict[str, list[int]] = {}
    for s in sets:
        for elem in s.get("elem", []):
            inner = elem.get("elem") if isinstance(elem, dict) else None
            if not isinstance(inner, dict):
                continue
            parts = str(inner.get("comment") or "").split(":")
            counter = inner.get("counter")
            if len(parts) < 3 or parts[0] != "rpt" or not isinstance(counter, dict):
                continue
            if wanted is not None and _first_live_key(inner.get("val")) not in wanted:
                continue
            c = out.setdefault(parts[1], [0, 0])
            c[0] += int(counter.get("packets", 0))
            c[1] += int(counter.get("bytes", 0))
    return out


def _addr(part: Any) -> str:
    if isinstance(part, dict) and "prefix" in part:
        return f"{part['prefix']['addr']}/{part['prefix']['len']}"
    return str(part)  # a host: nft prints it bare, as `ipset save` does


def _dims(val: Any) -> list[str | tuple[str, int, int]]:
    """One nft element's dimensions: an address as `ipset save` spells it, or a
    `proto . port-range` pair as (proto, lo, hi)."""
    parts = val["concat"] if isinstance(val, dict) and "concat" in val else [val]
    out: list[str | tuple[str, int, int]] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, str) and part in ("tcp", "udp") and i + 1 < len(parts):
            port = parts[i + 1]
            lo, hi = port["range"] if isinstance(port, dict) else (port, port)
            out.append((part, int(lo), int(hi)))
            i += 2
        else:
            out.append(_addr(part))
            i += 1
    return out


def _keys(val: Any) -> list[str]:
    """One nft element as the kernel elements `ipset save` would list for it (the
    spelling set_elements.py compares with the bundle): dimensions joined by ",", a
    `proto . port-range` pair expanded to one `proto:port` per port."""
    keys = [""]
    for dim in _dims(val):
        if isinstance(dim, str):
            options = [dim]
        else:
            proto, lo, hi = dim
            options = [f"{proto}:{p}" for p in range(lo, hi + 1)]
        keys = [f"{k},{o}" if k else o for k in keys for o in options]
    return keys


def _first_live_key(val: Any) -> str:
    """`_keys(val)[0]` without spelling out every port of a range."""
    return ",".join(d if isinstance(d, str) else f"{d[0]}:{d[1]}" for d in _dims(val))


def live_set(obj: dict[str, Any]) -> LiveSet:
    """A set of our table with its elements (a range's counter on its first port)."""
    out = LiveSet(f"nft set {obj.get('name')} type {obj.get('type')}")
    for elem in obj.get("elem", []):
        inner: dict[str, Any] = (
            elem["elem"] if isinstance(elem, dict) and "elem" in elem else {"val": elem}
        )
        counter: dict[str, Any] = inner.get("counter") or {}
        for n, key in enumerate(_keys(inner.get("val"))):
            out.elements.append(
                LiveElement(
                    key,
                    inner.get("comment"),
                    int(counter.get("packets", 0)) if n == 0 else 0,
                    int(counter.get("bytes", 0)) if n == 0 else 0,
                )
            )
    return out


def _script_sets(script: str) -> tuple[str, dict[str, str]]:
    """(the script without the lookup sets' element lines, set -> the text of its element
    lines). render_nft writes a lookup set's elements one per line after
    `\t\telements = {`, three tabs deep, and closes them with `\t\t}` (an address
    set's elements stay on one line); found with str.find, not line by line: a 50k-rule
    script has ~100k element lines."""
    marker = "\t\telements = {\n"
    skeleton: list[str] = []
    blocks: dict[str, str] = {}
    pos = 0
    while (i := script.find(marker, pos)) >= 0:
        start = i + len(marker)
        end = script.find("\n\t\t}", start)
        head = script.rfind("\n\tset ", 0, i) + 6
        blocks[script[head : script.find(" ", head)]] = script[start:end]
        skeleton.append(script[pos:start])
        pos = end
    skeleton.append(script[pos:])
    return "".join(skeleton), blocks


def _elements(block: str) -> dict[str, str]:
    """A set's element lines: element key -> its line (`key counter ... comment "..."`)."""
    out: dict[str, str] = {}
    for line in block.split("\n") if block else ():
        text = line.strip().rstrip(",")
        out[text.split(" counter ", 1)[0]] = text
    return out


def element_delta(old: str, new: str) -> tuple[str, dict[str, list[str]]] | None:
    """`old` -> `new` as set element changes alone (one `nft -f` transaction: deletes, then
    adds), and the element keys it deletes per set; None when anything else differs (the
    table is then reloaded). An element passing to another rule is deleted and added again
    (its counter restarts: the counts were its old rule's). Only the sets whose element
    text differs are parsed."""
    old_skel, old_sets = _script_sets(old)
    new_skel, new_sets = _script_sets(new)
    if old_skel != new_skel:
        return None
    lines: list[str] = []
    adds: list[str] = []
    removed: dict[str, list[str]] = {}
    for name in sorted(old_sets.keys() | new_sets.keys()):
        if old_sets.get(name) == new_sets.get(name):
            continue
        before, after = _elements(old_sets.get(name, "")), _elements(new_sets.get(name, ""))
        gone = [k for k, text in before.items() if after.get(k) != text]
        came = [text for k, text in after.items() if before.get(k) != text]
        if gone:
            removed[name] = gone
            lines.append(f"delete element inet {TABLE} {name} {{ {', '.join(gone)} }}")
        if came:
            adds.append(f"add element inet {TABLE} {name} {{ {', '.join(came)} }}")
    return "".join(line + "\n" for line in lines + adds), removed


def _first_key(key: str) -> str:
    """A script element key (`198.18.5.5/32 . tcp . 80-90`) as `_keys` spells the live
    element's first kernel element, which holds its counter (`198.18.5.5,tcp:80`)."""
    parts = key.split(" . ")
    out: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part in ("tcp", "udp") and i + 1 < len(parts):
            out.append(f"{part}:{parts[i + 1].split('-')[0]}")
            i += 2
            continue
        if part.endswith("/32") and "." in part:
            part = part[:-3]
        elif part.endswith("/128") and ":" in part:
            part = part[:-4]
        out.append(part)
        i += 1
    return ",".join(out)


class NftDataplane(Dataplane):
    """`table inet rampart` through `nft -f` (writes) and `nft -j list` (reads)."""

    name = BACKEND
    backend = BACKEND
    loads_script = True

    def __init__(
        self, runner: Runner | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.runner = runner or Runner()
        self.clock = clock
        self._snapshot: tuple[float, tuple[dict[str, LiveFamily], list[dict[str, Any]]]] | None
        self._snapshot = None

    def _list(self) -> dict[str, Any]:
        res = self.runner.run(["nft", "-j", "list", "table", "inet", TABLE], check=False)
        if res.returncode != 0:
            if "No such file or directory" in res.stderr:
                return {}  # no table: nothing of ours is loaded
            raise DataplaneError(res.stderr.strip() or "nft list failed")
        return json.loads(res.stdout or "{}")

    def read_all(self) -> tuple[dict[str, LiveFamily], list[dict[str, Any]]]:
        """Both families and the sets from one listing. A status read or an apply asks
        for v4, v6, the sets and their elements in turn: a listing younger than
        SNAPSHOT_TTL answers them all (one `nft -j list` of a 10k-rule table is ~0.6-2.6 s
        here), and a load drops it."""
        now = self.clock()
        if self._snapshot is not None and now - self._snapshot[0] < SNAPSHOT_TTL:
            return self._snapshot[1]
        parsed = parse_table(self._list())
        self._snapshot = (self.clock(), parsed)
        return parsed

    def read(self, family: str, tables: Iterable[str] | None = None) -> LiveFamily:
        live = self.read_all()[0][family]
        if tables is not None:
            wanted = set(tables)
            live = {t: v for t, v in live.items() if t in wanted}
        return live

    def load_script(self, script: str | None) -> None:
        """One transaction: the table as `script` says (None: no table at all)."""
        self._snapshot = None
        try:
            self.runner.run(["nft", "-f", "-"], input=script or EMPTY_SCRIPT)
        except CommandError as exc:
            raise DataplaneError(str(exc)) from exc

    def element_counts(self) -> dict[str, list[int]]:
        return element_tags(self.read_all()[1])

    def update_elements(
        self,
        old_script: str,
        new_script: str,
        before_kernel: Callable[[], None],
        lost: dict[str, list[int]] | None,
    ) -> bool:
        """A change that only moves set elements (a rule added to, removed from or edited
        within a set-compiled block) as one element transaction: rules and other elements
        keep their counters. False (nothing done): something else changed."""
        delta = element_delta(old_script, new_script)
        if delta is None:
            return False
        payload, removed = delta
        if not payload:
            return True
        if lost is not None and removed:
            for name, keys in removed.items():
                for uuid, (packets, nbytes) in self._element_counts(name, keys).items():
                    c = lost.setdefault(uuid, [0, 0])
                    c[0] += packets
                    c[1] += nbytes
        before_kernel()
        self.load_script(payload)  # one transaction: the kernel refuses all or nothing
        return True

    def _element_counts(self, name: str, keys: list[str]) -> dict[str, list[int]]:
        """The counts of these elements of one set, per rule uuid, from a listing of that
        set alone (`nft list set`; a table listing, or `nft get element`, which fills its
        cache with every set's elements, costs seconds at 50k elements)."""
        res = self.runner.run(["nft", "-j", "list", "set", "inet", TABLE, name], check=False)
        if res.returncode != 0:
            raise DataplaneError(res.stderr.strip() or f"nft list set {name} failed")
        listed = json.loads(res.stdout or "{}").get("nftables", [])
        sets = [item["set"] for item in listed if "set" in item]
        counts = element_tags(sets, {_first_key(key) for key in keys})
        return {uuid: c for uuid, c in counts.items() if c[0]}

    def read_sets(
        self, names: Iterable[str] | None = None, keys: Mapping[str, Collection[str]] | None = None
    ) -> dict[str, LiveSet]:
        wanted = set(names) if names is not None else None
        return {
            s["name"]: live_set(s)
            for s in self.read_all()[1]
            if str(s.get("name", "")).startswith(SET_PREFIX)
            and (wanted is None or s["name"] in wanted)
        }

    def restore(self, family: str, payload: str) -> None:
        raise DataplaneError("the nft-native dataplane loads nft scripts, not restore payloads")

    def ipset_list(self) -> dict[str, int]:
        """Our sets in the table -> their elements, counted as ipset counts them."""
        return {
            s["name"]: sum(_elem_size(e) for e in s.get("elem", []))
            for s in self.read_all()[1]
            if str(s.get("name", "")).startswith(SET_PREFIX)
        }

    def ipset_restore(self, payload: str) -> None:
        raise DataplaneError("the nft-native dataplane has no ipsets")

    def ipset_destroy(self, names: Iterable[str]) -> list[str]:
        return []  # the sets live and die with the table

    def _iptables(self) -> list[IptablesDataplane]:
        # each cleans up the OTHER iptables backend: together, both
        return [
            IptablesDataplane(b, self.runner, reader="save", native_cleanup=False)
            for b in ("legacy", "nft")
        ]

    def other_backend_leftovers(self) -> dict[str, list[str]]:
        """RPT- chains and jumps of ours in iptables (either backend): they would filter
        next to this table."""
        found: dict[str, list[str]] = {}
        for dp in self._iptables():
            for key, names in dp.other_backend_leftovers().items():
                found[f"{dp._other()}:{key}"] = names
        return found

    def cleanup_other_backend(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for dp in self._iptables():
            try:
                for key, names in dp.cleanup_other_backend().items():
                    found[f"{dp._other()}:{key}"] = names
            except (CommandError, FileNotFoundError):
                continue  # that backend's tools are not installed
        if found:  # the ipsets of those rules are no longer referenced
            res = self.runner.run(["ipset", "list", "-n"], check=False)
            ours = [n for n in res.stdout.split() if n.startswith(SET_PREFIX)]
            if ours:
                self.runner.run(
                    ["ipset", "restore"], input="".join(f"destroy {n}\n" for n in ours), check=False
                )
        return found

    def facts(self) -> dict[str, str]:
        res = self.runner.run(["nft", "--version"], check=False)
        return {"iptables_version": "", "nft_version": res.stdout.strip(), "backend": BACKEND}
