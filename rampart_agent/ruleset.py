"""Pure model of the rules the agent owns, and the restore payloads that change them.

A bundle's `iptables-restore` text is parsed into table -> chain blocks. `plan_table` turns
(what is live, what is wanted) into ONE `iptables-restore --noflush` payload per table that
touches only RPT- chains and our jump rules: new or rewritten chains are declared and
refilled, a small change inside a large chain is an in-place edit (unchanged rules keep
their counters), missing jump rules are inserted at the top, chains that are no longer
wanted are flushed and deleted last (after every jump to them is gone).
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field

from rampart_contract.naming import BUILTINS, CHAIN_PREFIX, SET_PREFIX
from rampart_contract.naming import CHAIN_MAX as MAX_CHAIN_LEN
from rampart_contract.naming import SET_MAX as MAX_SET_LEN

TABLES = ("raw", "mangle", "nat", "filter", "security")
COMMENT_RE = re.compile(r"""--comment\s+(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+))""")
TARGET_RE = re.compile(r"(?:^|\s)-[jg]\s+(\S+)")
PORT_RANGE_RE = re.compile(r",[a-z]+:(\d+)-(\d+)(?=[ ,\n]|$)")  # a set element's port range


class BundleError(ValueError):
    """The bundle breaks a convention the agent relies on (nothing is applied)."""


@dataclass
class Table:
    """One table of one family: our chains (rule lines, `-A CHAIN ...`) and jump rules."""

    name: str
    chains: dict[str, list[str]] = field(default_factory=dict)
    jumps: dict[str, list[str]] = field(default_factory=dict)  # builtin -> `-A INPUT ...`
    # chain -> its rule lines as one text, when they came as one run (see parse_restore)
    runs: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def is_empty(self) -> bool:
        return not self.chains and not any(self.jumps.values())


# A run of consecutive rule lines of one chain, as the compiler writes them: one C-level
# match per chain instead of a Python step per line (50k-rule bundles).
_RUN_RE = re.compile(r"-A (\S+) [^\n]*(?:\n-A \1 [^\n]*)*")


def parse_restore(text: str, previous: dict[str, Table] | None = None) -> dict[str, Table]:
    """Parse a bundle's restore text; reject anything outside the conventions.

    Written for 50k-rule bundles: the rule lines of a declared RPT- chain are taken a run
    at a time (one regex match and one split per chain); every other line is checked on
    its own. `previous` (the tables of the bundle applied before) lends its line lists to
    chains whose run of lines is the same text: a 1-rule change to a 50k-rule bundle
    splits one chain, not all of them. The helpers are called once per run or per other
    line, never per rule line.
    """
    tables: dict[str, Table] = {}
    current: Table | None = None
    chains: dict[str, list[str]] = {}
    runs: dict[str, str] = {}
    earlier: Table | None = None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    pos, size, lineno = 0, len(text), 0
    while pos < size:
        if text.startswith("-A ", pos):
            if earlier is not None:  # the previous bundle's run of this chain, unchanged?
                chain = text[pos + 3 : text.find(" ", pos + 3)]
                end = _lend_run(text, pos, chain, earlier, chains, runs)
                if end >= 0:
                    lineno += len(chains[chain])
                    pos = end + 1
                    continue
            run = _RUN_RE.match(text, pos)
            rules = chains.get(run.group(1)) if run is not None else None
            if run is not None and rules is not None:  # rules of a declared RPT- chain
                lineno += _add_run(run.group(1), run.group(0), rules, chains, runs)
                pos = run.end() + 1
                continue
        eol = text.find("\n", pos)
        if eol < 0:
            eol = size
        line = text[pos:eol].strip()
        pos = eol + 1
        lineno += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = _open_table(line, lineno, tables)
            chains, runs = current.chains, current.runs
            earlier = (previous or {}).get(current.name)
        elif current is None:
            raise BundleError(f"line {lineno}: rule outside a table")
        elif line == "COMMIT":
            current = earlier = None
            chains, runs = {}, {}
        else:
            _table_line(current, line, lineno)
    if current is not None:
        raise BundleError("table without COMMIT")
    _check_jumps(tables)
    return tables


def _lend_run(
    text: str,
    pos: int,
    chain: str,
    earlier: Table,
    chains: dict[str, list[str]],
    runs: dict[str, str],
) -> int:
    """If the run of lines at `pos` is the previous bundle's run of its chain, unchanged,
    share that bundle's line list (a memcmp instead of a regex scan and a split) and
    return where the run ends; else -1."""
    block = earlier.runs.get(chain)
    if block is None:
        return -1
    end = pos + len(block)
    if (
        chains.get(chain) == []
        and chain not in runs
        and text.startswith(block, pos)
        and text.startswith("\n", end)
        and not text.startswith(f"\n-A {chain} ", end)
    ):
        runs[chain] = block
        chains[chain] = earlier.chains[chain]  # shared, never extended
        return end
    return -1


def _add_run(
    chain: str, block: str, rules: list[str], chains: dict[str, list[str]], runs: dict[str, str]
) -> int:
    """Add a run of rule lines to its (declared) chain; return how many lines it had."""
    if not rules and chain not in runs:  # the chain's first (usually only) run
        runs[chain] = block
    elif runs.pop(chain, None) is not None:  # in pieces: no single text for it
        chains[chain] = rules = list(rules)  # (the first piece may be shared)
    lines = block.split("\n")
    if block.endswith(" ") or " \n" in block:
        lines = [line.rstrip() for line in lines]
    rules += lines
    return len(lines)


def _open_table(line: str, lineno: int, tables: dict[str, Table]) -> Table:
    name = line[1:]
    if name not in TABLES:
        raise BundleError(f"line {lineno}: unknown table {name!r}")
    return tables.setdefault(name, Table(name))


def _table_line(current: Table, line: str, lineno: int) -> None:
    """A line inside a table that is not part of a run: a chain declaration, a jump from a
    built-in chain, or an error."""
    if line.startswith(":"):
        chain = line[1:].split()[0]
        if chain in BUILTINS:
            return  # built-in chain policies are never changed
        _check_chain(chain, lineno)
        current.chains.setdefault(chain, [])
        return
    parts = line.split(None, 2)
    if len(parts) < 3 or parts[0] != "-A":
        raise BundleError(f"line {lineno}: only ':CHAIN' declarations and '-A' rules allowed")
    chain = parts[1]
    if chain in BUILTINS:
        target = _target(line)
        if not target or not target.startswith(CHAIN_PREFIX):
            raise BundleError(f"line {lineno}: a rule in {chain} must jump to an RPT- chain")
        current.jumps.setdefault(chain, []).append(line)
        return
    _check_chain(chain, lineno)
    raise BundleError(f"line {lineno}: chain {chain} is not declared")


def _check_jumps(tables: dict[str, Table]) -> None:
    for table in tables.values():
        for lines in table.jumps.values():
            for line in lines:
                if _target(line) not in table.chains:
                    raise BundleError(f"jump to undeclared chain: {line}")


def _check_chain(chain: str, lineno: int) -> None:
    if not chain.startswith(CHAIN_PREFIX) or len(chain) > MAX_CHAIN_LEN:
        raise BundleError(
            f"line {lineno}: chain {chain!r} must start with {CHAIN_PREFIX} and be at most "
            f"{MAX_CHAIN_LEN} characters"
        )


def _target(line: str) -> str | None:
    match = TARGET_RE.search(line)
    return match.group(1) if match else None


def rule_comment(line: str) -> str | None:
    """The `--comment` of a rule line (quoted or not), or None."""
    match = COMMENT_RE.search(line)
    if not match:
        return None
    if match.group(1) is not None:
        return re.sub(r"\\(.)", r"\1", match.group(1))
    return match.group(2) if match.group(2) is not None else match.group(3)


@dataclass
class SetBlock:
    """One set of a bundle: its create line and its add lines (as one text)."""

    name: str
    create: str
    adds: str  # "add NAME entry\n" lines
    entries: int  # kernel elements (a port range counts one per port)


def parse_ipsets(text: str, previous: dict[str, SetBlock] | None = None) -> dict[str, SetBlock]:
    """`ipset restore` text (create then add lines, set by set) -> {name: SetBlock}.

    A 100k-entry group is one create line and 100k add lines: each set's add lines are
    taken as one slice of the text and checked with C-level counts (~2 ms instead of
    ~25 ms splitting and re-joining lines); anything unusual falls back to line by line.
    `previous` (the sets of the bundle applied before) lends its block to a set whose
    lines are the same text (one memcmp): a 1-rule change parses the sets it changes.
    """
    sets: dict[str, SetBlock] = {}
    if text and not text.endswith("\n"):
        text += "\n"
    pos, n = 0, len(text)
    while pos < n:
        eol = text.find("\n", pos)
        line = text[pos:eol].strip()
        here, pos = pos, eol + 1
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 3 or parts[0] not in ("create", "-N"):
            raise BundleError(
                f"ipsets line {_line_of(text, here)}: expected a create line (sets come one by one)"
            )
        name = parts[1]
        if not name.startswith(SET_PREFIX) or len(name) > MAX_SET_LEN:
            raise BundleError(
                f"ipsets line {_line_of(text, here)}: set {name!r} must start with {SET_PREFIX}"
            )
        if name in sets:
            raise BundleError(f"ipsets line {_line_of(text, here)}: set {name} created twice")
        create = " ".join(parts)
        earlier = (previous or {}).get(name)
        if earlier is not None and earlier.create == create and earlier.adds:
            end = pos + len(earlier.adds)
            if text.startswith(earlier.adds, pos) and (end == n or text.startswith("create ", end)):
                sets[name] = earlier
                pos = end
                continue
        end, count = _adds_end(text, pos, f"add {name} ")
        if "port" in parts[2]:  # `tcp:1000-1002` is one line, three kernel elements
            count += sum(int(hi) - int(lo) for lo, hi in PORT_RANGE_RE.findall(text, pos, end))
        sets[name] = SetBlock(name, create, text[pos:end], count)
        pos = end
    return sets


def _line_of(text: str, pos: int) -> int:
    """The 1-based line number of `pos` (counted only for an error message)."""
    return text.count("\n", 0, pos) + 1


def _adds_end(text: str, start: int, prefix: str) -> tuple[int, int]:
    """End and line count of the run of `prefix` lines from `start` (the text ends with a
    newline, and `start` follows one)."""
    if not text.startswith(prefix, start):
        return start, 0
    end = text.find("\ncreate ", start - 1)
    end = len(text) if end < 0 else end + 1
    lines = text.count("\n", start, end)
    # counted in place (no copy): every line of the slice is an add line of this set
    if text.count("\n" + prefix, start - 1, end - 1) == lines and text[end - 1] == "\n":
        return end, lines
    # the slow way: a comment, a blank line, another set's add, or no final newline
    pos, lines = start, 0
    while text.startswith(prefix, pos):
        pos = text.find("\n", pos) + 1
        lines += 1
    return pos, lines


def temp_set_name(name: str) -> str:
    """Name a damaged set is refilled under before it is swapped into place."""
    return "rpt-tmp-" + hashlib.sha256(name.encode()).hexdigest()[:16]


def ipset_fill_payload(block: SetBlock) -> str:
    """Create and fill a missing set under its own name (run with `ipset -exist restore`).

    Names follow content, so a leftover of the same name from a killed apply has a subset
    of the right entries: `-exist` completes it. No rule refers to a set before the fill
    that creates it has finished, and a start after a kill destroys the sets the confirmed
    bundle does not name, so a half-filled set is never used. (Filling under a temporary
    name and renaming would cost a rewrite of every add line: ~7 ms for 100k entries.)
    """
    return f"{ipset_create_line(block)}\n{block.adds}"


def ipset_create_line(block: SetBlock) -> str:
    """The set's create line, sized: the default maxelem is 65,536 ("Hash is full" at
    65,538 entries), so a bundle that did not size a set gets it sized here."""
    create = block.create
    words = create.split()
    if "maxelem" not in words:
        create += f" maxelem {max(65536, 1 << (2 * block.entries - 1).bit_length())}"
    if "hashsize" not in words:
        create += f" hashsize {max(1024, 1 << max(block.entries - 1, 1).bit_length())}"
    return create


FILL_SPLIT_FROM = 20_000  # entries from which a set is filled by several processes at once


def ipset_fill_payloads(blocks: list[SetBlock], parts: int) -> list[str]:
    """The `ipset -exist restore` inputs that fill these sets (just created, empty), to be
    run at the same time: a set of FILL_SPLIT_FROM entries or more cut at line ends into
    `parts` pieces; the smaller ones whole, together in one input, or, when they hold
    FILL_SPLIT_FROM entries between them, dealt into `parts` inputs of about the same
    size. The kernel adds to one set from several processes at once (100k entries: 101 ms
    with two, 184 ms with one, on 2 CPUs), and to several sets likewise (a set-compiled
    10k-rule policy, 55 sets and 26k entries: ~130 ms with two, ~230 ms with one). Each
    piece repeats its set's create line: ipset batches add lines only after a create in
    the same run (100k adds: 140 ms, 280 ms without)."""
    small: list[SetBlock] = []
    out: list[str] = []
    for block in blocks:
        create = ipset_create_line(block) + "\n"
        if parts < 2 or block.entries < FILL_SPLIT_FROM:
            small.append(block)
            continue
        text, start = block.adds, 0
        for k in range(1, parts + 1):
            end = len(text) if k == parts else text.find("\n", len(text) * k // parts) + 1
            if end > start:
                out.append(create + text[start:end])
                start = end
    if sum(b.entries for b in small) < FILL_SPLIT_FROM:
        parts = 1
    # the largest first, each to the input with the fewest bytes so far; in each input
    # the sets keep their order
    where, sizes = [0] * len(small), [0] * max(1, parts)
    for i in sorted(range(len(small)), key=lambda i: -len(small[i].adds)):
        where[i] = k = sizes.index(min(sizes))
        sizes[k] += len(small[i].adds)
    inputs = [
        "".join(ipset_fill_payload(b) for b, w in zip(small, where, strict=True) if w == k)
        for k in range(len(sizes))
    ]
    return [text for text in inputs if text] + out


def ipset_refill_payload(block: SetBlock) -> str:
    """Refill an existing set whose content was changed by hand: fill a temporary set,
    swap it in (rules keep pointing at the name), destroy the temporary one."""
    tmp = temp_set_name(block.name)
    fill = ipset_fill_payload(block)
    create, _, adds = fill.partition("\n")
    create = create.replace(f"create {block.name} ", f"create {tmp} ", 1)
    adds = adds.replace(f"add {block.name} ", f"add {tmp} ")
    return f"{create}\n{adds}swap {tmp} {block.name}\ndestroy {tmp}\n"


# --- planning ----------------------------------------------------------------------------


@dataclass
class LiveJump:
    """One of our jump rules in a built-in chain (1-based position).

    `spec` is set when the jump is what we believe is there rather than what was read:
    it is then deleted by its rule text, which fails (and so triggers a full, reading
    apply) instead of deleting someone else's rule if the belief is wrong.
    """

    position: int
    target: str
    spec: str | None = None


def believed_jumps(table: Table | None) -> dict[str, list[LiveJump]]:
    """The jumps `table` (the last applied bundle's) put at the top of the built-ins."""
    if table is None:
        return {}
    return {
        b: [
            LiveJump(i, _target(line) or "", line.split(None, 2)[2])
            for i, line in enumerate(lines, 1)
        ]
        for b, lines in table.jumps.items()
        if lines
    }


def plan_table(
    table: str,
    old: Table | None,
    new: Table | None,
    live_jumps: dict[str, list[LiveJump]],
    *,
    full: bool = False,
    live_chains: set[str] | None = None,
    inplace_limit: int = 1 << 30,
) -> list[str]:
    """Lines of one `*table ... COMMIT` block turning `old` into `new` (empty list: nothing).

    `old` is what we believe the kernel holds (the last applied bundle); with `full`, every
    wanted chain is rewritten and every live RPT- chain in `live_chains` not wanted is
    removed, whatever we believed (repair after a crash or drift).
    `inplace_limit`: chains longer than this are rewritten rather than edited in place
    (with the nft backend a positional edit in a 50k-rule chain costs more than a rewrite).
    """
    old = old or Table(table)
    new = new or Table(table)
    old_chains = dict(old.chains)
    if full:
        old_chains = {name: [] for name in (live_chains or set())}
    declares: list[str] = []
    body: list[str] = []
    for name, lines in new.chains.items():
        before = old_chains.get(name)
        if not full and (before is lines or before == lines):
            continue
        edit = None
        if not full and before is not None and len(before) <= inplace_limit:
            edit = _edit_chain(name, before, lines)
        if edit is None:
            declares.append(f":{name} - [0:0]")
            body.extend(lines)
        else:
            body.extend(edit)
    jump_lines: list[str] = []
    for builtin in BUILTINS:
        wanted = new.jumps.get(builtin, [])
        present = sorted(live_jumps.get(builtin, []), key=lambda j: j.position)
        want_targets = [_target(line) for line in wanted]
        if [j.target for j in present] == want_targets and all(
            j.position == i + 1 for i, j in enumerate(present)
        ):
            continue
        for jump in sorted(present, key=lambda j: -j.position):
            jump_lines.append(f"-D {builtin} {jump.spec or jump.position}")
        for i, line in enumerate(wanted, 1):
            jump_lines.append(f"-I {builtin} {i} {line.split(None, 2)[2]}")
    removed = sorted(name for name in old_chains if name not in new.chains)
    if not (declares or body or jump_lines or removed):
        return []
    out = [f"*{table}", *declares, *body, *jump_lines]
    out += [f"-F {name}" for name in removed]
    out += [f"-X {name}" for name in removed]
    out.append("COMMIT")
    return out


def edit_span(before: list[str], after: list[str]) -> tuple[int, int] | None:
    """The rules an in-place edit of a chain keeps: (p, s), its first p and last s rules;
    None when the chain is rewritten instead (its rules all start counting from zero).

    Only worth it when the change is small; the unchanged rules keep their counters.
    """
    if len(set(before)) != len(before):
        return None
    p = 0
    limit = min(len(before), len(after))
    while p < limit and before[p] == after[p]:
        p += 1
    s = 0
    while s < limit - p and before[-1 - s] == after[-1 - s]:
        s += 1
    if (len(before) - p - s) + (len(after) - p - s) > max(8, len(after) // 2):
        return None
    if not p and not s:  # no rule keeps its place (and counters): a flush is cheaper than
        return None  # deleting each rule by its text (nft: 10 vs 16 ms for a set rule)
    return p, s


def _edit_chain(name: str, before: list[str], after: list[str]) -> list[str] | None:
    """In-place edit of a chain (delete/insert of the changed middle), or None to rewrite."""
    span = edit_span(before, after)
    if span is None:
        return None
    p, s = span
    old_mid = before[p : len(before) - s]
    new_mid = after[p : len(after) - s]
    out = [f"-D {name} {line.split(None, 2)[2]}" for line in old_mid]
    at_end = s == 0
    for i, line in enumerate(new_mid):
        rule = line.split(None, 2)[2]
        out.append(f"-A {name} {rule}" if at_end else f"-I {name} {p + 1 + i} {rule}")
    return out


def referenced_sets(text: str) -> set[str]:
    """Names of rpt- sets a restore text references (`--match-set NAME`)."""
    return set(re.findall(r"--match-set\s+(rpt-[A-Za-z0-9_.:-]+)", text))


def split_words(line: str) -> list[str]:
    return shlex.split(line)
