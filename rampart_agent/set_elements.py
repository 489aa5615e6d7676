"""Set-compiled blocks as the agent sees them: set elements, their rule tags, their counters.

A lookup set (created with `counters comment`, see docs/bundle-format.md) holds the
elements of several policy rules; each element carries its rule's tag (`rpt:<uuid>:<hash>`)
as its comment and counts its own packets. So:

- counters: a rule's count is the sum of its elements' counters (next to the kernel rule
  counters of the rules that stayed linear), summed per uuid like those;
- incremental updates: a set whose name stays while its elements change is updated element
  by element (`add -exist` of the new or re-tagged elements, then `del` of the gone ones,
  one `ipset restore` batch), without a table write; adds come first so that a rule moving
  between the sets of one block matches by its old or its new set at every moment;
- drift: the kernel's elements are compared with the bundle's, key by key.

The kernel stores a port range `tcp:1000-1002` as one element per port and prints a /32
(/128) net as a bare address: `element_keys` spells a bundle value the way `ipset save`
lists it, so both sides compare as equal strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from rampart_agent.counters import Counts, merge, tag_uuid
from rampart_agent.dataplane.base import Dataplane, LiveSet
from rampart_agent.ruleset import SetBlock

COMMENT_RE = re.compile(r' comment "((?:[^"\\]|\\.)*)"')
PORT_RE = re.compile(r"^([a-z][a-z0-9-]*):(\d+)(?:-(\d+))?$")


def is_lookup(create: str) -> bool:
    """A set whose elements carry their rule's tag and count (a set-compiled block's)."""
    words = create.split()
    return "counters" in words and "comment" in words


def lookup_names(sets: dict[str, SetBlock]) -> list[str]:
    return sorted(name for name, block in sets.items() if is_lookup(block.create))


def rollback_sets(sets: dict[str, SetBlock]) -> set[str]:
    """The sets of a bundle kept while a newer one awaits its confirm: the address sets.
    A lookup set the newer bundle drops is destroyed at once (its counts were credited
    as lost; kept, they would come back with a rollback and be counted twice); a
    rollback re-creates it."""
    return {name for name, block in sets.items() if not is_lookup(block.create)}


def parse_add(line: str) -> tuple[str, str | None]:
    """(value, comment) of an `add NAME VALUE [packets N bytes M] [comment "..."]` line."""
    parts = line.split(" ", 3)
    value = parts[2] if len(parts) > 2 else ""
    if len(parts) < 4:
        return value, None
    rest = parts[3]
    if rest.startswith('comment "') and rest.endswith('"') and "\\" not in rest:
        return value, rest[9:-1]  # the compiler's spelling: the comment alone
    match = COMMENT_RE.search(line)
    return value, (match.group(1) if match else None)


def element_keys(value: str) -> list[str]:
    """The kernel elements of a bundle value, spelled as `ipset save` lists them."""
    if "-" not in value and "/32" not in value and "/128" not in value:
        return [value]  # most values: one element, spelled alike
    parts = value.split(",")
    ranges: list[list[str]] = []
    for part in parts:
        if part.count(":") == 1 and (m := PORT_RE.match(part)):
            lo, hi = int(m.group(2)), int(m.group(3) or m.group(2))
            ranges.append([f"{m.group(1)}:{p}" for p in range(lo, hi + 1)])
        elif part.endswith("/32") and "." in part:
            ranges.append([part[:-3]])
        elif part.endswith("/128") and ":" in part:
            ranges.append([part[:-4]])
        else:
            ranges.append([part])
    keys = [""]
    for options in ranges:
        keys = [f"{k},{o}" if k else o for k in keys for o in options]
    return keys


def wanted_elements(lines: Iterable[str]) -> dict[str, str | None]:
    """Kernel element -> comment, for a bundle's add lines."""
    out: dict[str, str | None] = {}
    for line in lines:
        if not line:
            continue
        value, comment = parse_add(line)
        for key in element_keys(value):
            out[key] = comment
    return out


@dataclass
class SetUpdate:
    """The element changes of one set: `add -exist` lines first, then `del` lines.
    `losing`: the elements whose counts go (deleted, or now another rule's) with the uuid
    they counted for."""

    name: str
    adds: list[str] = field(default_factory=list)
    dels: list[str] = field(default_factory=list)
    losing: dict[str, str] = field(default_factory=dict)

    def payload(self) -> str:
        return "".join(line + "\n" for line in (*self.adds, *self.dels))


def _add_line(name: str, key: str, comment: str | None, reset: bool) -> str:
    # `add -exist` of an existing element replaces its comment and keeps its counters,
    # unless they are given: an element passing to another rule starts from zero
    line = f"add {name} {key}"
    if reset:
        line += " packets 0 bytes 0"
    if comment is not None:
        line += f' comment "{comment}"'
    return line


def _changes(name: str, before: dict[str, str | None], after: dict[str, str | None]) -> SetUpdate:
    """`before` -> `after` (element -> comment); elements in neither stay as they are."""
    update = SetUpdate(name)
    for key, comment in after.items():
        if key in before and before[key] == comment:
            continue
        old = before.get(key)
        moved = key in before and tag_uuid(old) != tag_uuid(comment)
        update.adds.append(_add_line(name, key, comment, moved))
        if moved and (uuid := tag_uuid(old)):
            update.losing[key] = uuid
    for key, comment in before.items():
        if key not in after:
            update.dels.append(f"del {name} {key}")
            if uuid := tag_uuid(comment):
                update.losing[key] = uuid
    return update


def plan_update(old: SetBlock, new: SetBlock) -> SetUpdate:
    """The element changes turning the set of `old` into that of `new` (same name and
    create line), from the bundles alone: only the add lines that differ are expanded."""
    before, after = old.adds.split("\n"), new.adds.split("\n")
    before_set, after_set = set(before), set(after)
    gone = wanted_elements(line for line in before if line not in after_set)  # in line order
    came = wanted_elements(line for line in after if line not in before_set)
    # an element of a changed line may stay, in another line: not deleted then
    return _changes(new.name, gone, came)


def plan_repair(block: SetBlock, live: LiveSet) -> tuple[SetUpdate, Counts]:
    """The element changes making the live set hold exactly the bundle's elements (a full
    rewrite: after a crash or drift), and the counts the changed elements lose."""
    have = {e.value: e.comment for e in live.elements}
    update = _changes(block.name, have, wanted_elements(block.adds.split("\n")))
    return update, lost_in_set(live, update.losing)


def lost_in_set(live: LiveSet | None, losing: dict[str, str]) -> Counts:
    """The counts the elements in `losing` (element -> uuid) hold in the live set."""
    lost: Counts = {}
    if live is None or not losing:
        return lost
    for element in live.elements:
        uuid = losing.get(element.value)
        if uuid is not None and (element.packets or element.bytes):
            c = lost.setdefault(uuid, [0, 0])
            c[0] += element.packets
            c[1] += element.bytes
    return lost


def add_set_counts(live: Iterable[LiveSet], into: Counts) -> None:
    """Add the element counters of lookup sets to `into`, per rule uuid."""
    for live_set in live:
        for element in live_set.elements:
            uuid = tag_uuid(element.comment)
            if uuid is not None:
                c = into.setdefault(uuid, [0, 0])
                c[0] += element.packets
                c[1] += element.bytes


def set_drift(block: SetBlock, live: LiveSet) -> list[str]:
    """Diff lines naming the elements of a lookup set that differ from the bundle: `-` an
    element the kernel lacks, `+` one it has that the bundle does not (added by hand), each
    with its set and the rule tag it carries (a re-tagged element is both)."""
    want = wanted_elements(block.adds.split("\n"))
    have = {e.value: e.comment for e in live.elements}
    out = []
    for key in sorted(want.keys() | have.keys()):
        if key in want and (key not in have or have[key] != want[key]):
            out.append(f"-set {block.name} element {key}  [rule {want[key]}]")
        if key in have and (key not in want or have[key] != want[key]):
            what = f"rule {have[key]}" if tag_uuid(have[key]) else f"comment {have[key]}"
            out.append(f"+set {block.name} element {key}  [{what}, not in the bundle]")
    return out


@dataclass
class ElementPlan:
    """What the lookup sets need in one transition: the element changes (one `ipset
    restore` batch), the sets refilled whole (swapped), and the counts both take from
    the kernel (read before anything changes)."""

    updates: str = ""
    refills: list[SetBlock] = field(default_factory=list)
    lost: Counts = field(default_factory=dict)


def plan_elements(
    dp: Dataplane,
    old: dict[str, SetBlock],
    new: dict[str, SetBlock],
    existing: Iterable[str],
    *,
    full: bool,
) -> ElementPlan:
    """The element changes of the lookup sets `new` has and that exist already.

    Incremental (`full` false): from the two bundles alone, trusting the records; the
    kernel is read only for the counts of what goes (the sets whose elements are deleted
    or re-tagged, and the lookup sets `new` no longer has). Full: every lookup set is read
    and diffed against the bundle, key by key (after a crash: whatever the killed apply
    had done), so the elements that stay keep their counters.
    """
    plan = ElementPlan()
    existing = set(existing)
    wanted = {n: b for n, b in new.items() if is_lookup(b.create) and n in existing}
    updates: list[SetUpdate] = []
    whole: list[str] = []  # sets whose every count goes (refilled, or leaving the bundle)
    if full:
        read = sorted(set(wanted) | {n for n in existing if n not in new})
        live = dp.read_sets(read) if read else {}
        for name, block in wanted.items():
            got = live.get(name)
            if got is None or not is_lookup(got.create):
                plan.refills.append(block)
                whole.append(name)
                continue
            update, lost = plan_repair(block, got)
            updates.append(update)
            merge(plan.lost, lost)
        whole += [n for n in existing if n not in new and n in live and is_lookup(live[n].create)]
        for name in whole:
            add_set_counts([live[name]] if name in live else [], plan.lost)
    else:
        for name, block in wanted.items():
            before = old.get(name)
            if before is not None and (before is block or before.adds == block.adds):
                continue
            if before is None or before.create != block.create:
                plan.refills.append(block)  # content unknown, or resized: a new set swapped in
                whole.append(name)
            else:
                updates.append(plan_update(before, block))
        whole += [n for n, b in old.items() if n not in new and is_lookup(b.create)]
        losing = {u.name: u.losing for u in updates if u.losing}
        read = sorted(set(losing) | set(whole))
        # of a set losing some elements, only those elements' counts are needed
        live = dp.read_sets(read, keys=losing) if read else {}
        for name, keys in losing.items():
            merge(plan.lost, lost_in_set(live.get(name), keys))
        add_set_counts([live[n] for n in whole if n in live], plan.lost)
    plan.updates = "".join(u.payload() for u in updates)
    return plan
