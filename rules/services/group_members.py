"""Group members as sets: a change costs O(changed members), whatever the group's size.

Adding or removing members inserts or deletes only those rows (raw bulk writes, no model
signals), records one audit entry listing the added and removed members, and touches the
revisions of the rule sets using the group. Replacing the members computes the difference
against what is stored; rows are renumbered only when the order itself changed.

The group also keeps its member keys in order as one member set (`rules.member_sets`),
updated here from the old one and the difference, so a revision snapshot of a 100,000-member
group reads one row rather than 100,000 (a set that no longer matches the rows is rebuilt
from them).
"""

from __future__ import annotations

import itertools
import json
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import connections, router, transaction
from django.db.models import Max, Model, Q

from compiler import gc_paused
from core.audit.services import record_members
from core.bulk_rows import insert_rows
from rules.member_sets import member_set_store, stored_member_keys
from rules.models import AddressGroup, AddressGroupMember, ServiceGroupMember
from rules.revisions.capture import revisions_touch
from rules.services.names import IPV4_HOST, NameIndex, group_reaches
from rules.services.rows import chunks, delete_rows, update_rows

# A member's identity: ("o", object pk), ("g", subgroup pk) or ("l", literal).
Key = tuple[str, int | str]
REWRITE_FROM = 1000  # a reorder of more members rewrites the rows (see _renumber)


@dataclass
class MemberDiff:
    """What a change did: member names added and removed (empty: nothing changed)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    count: int | None = None  # members afterwards

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


@dataclass
class _Kind:
    """The member model of a group kind and how a name resolves into a member row."""

    member_model: type[Model]
    object_field: str  # "address" or "service"
    resolve: Callable[[str], object]

    def key_of(self, group: Model, target: object) -> Key:
        if isinstance(target, type(group)):
            return ("g", target.pk)
        if isinstance(target, Model):
            return ("o", target.pk)
        return ("l", str(target))

    def row_key(self, object_id: int | None, subgroup_id: int | None, literal: str) -> Key:
        if object_id is not None:
            return ("o", object_id)
        if subgroup_id is not None:
            return ("g", subgroup_id)
        return ("l", literal)

    @property
    def columns(self) -> tuple[str, ...]:
        literal = ("literal",) if self.member_model is AddressGroupMember else ()
        return (f"{self.object_field}_id", "subgroup_id", *literal)


def _kind(group: Model, index: NameIndex) -> _Kind:
    if isinstance(group, AddressGroup):
        return _Kind(AddressGroupMember, "address", index.address_ref)
    return _Kind(ServiceGroupMember, "service", index.service_ref)


def _resolve(group: Model, kind: _Kind, refs: Sequence[str], label: str) -> list[tuple[Key, str]]:
    """Names → (member key, name), in the given order; refuses unknown names and cycles,
    naming every bad item."""
    out: list[tuple[Key, str]] = []
    errors = []
    literals = _ipv4_hosts(refs) if kind.member_model is AddressGroupMember else frozenset()
    if len(literals) == len(refs) and literals.issuperset(refs):  # all of them (no repeats)
        return [(("l", ref), ref) for ref in refs]
    for i, ref in enumerate(refs):
        if type(ref) is str and ref in literals:
            out.append((("l", ref), ref))
            continue
        try:
            target = kind.resolve(ref)
        except ValueError as exc:
            errors.append(f"{label}[{i}]: {exc}")
            continue
        key = kind.key_of(group, target)
        if key[0] == "g" and (
            key[1] == group.pk or group_reaches(kind.member_model, key[1], group.pk)
        ):
            errors.append(
                f"{label}[{i}]: {ref!r} contains {group.name!r}: a group cannot contain itself"
            )
            continue
        out.append((key, ref))
    if errors:
        raise ValidationError({label: errors})
    return out


_IPV4_LINE = re.compile(rf"^({IPV4_HOST.pattern})$", re.MULTILINE)


def _ipv4_hosts(refs: Sequence[str]) -> frozenset[str]:
    """The refs that are plain IPv4 hosts (what most members of a large group are), found by
    one regex pass over all of them: a call per member was a third of creating a
    100,000-member group. Such a string is never a name (names never read as addresses)."""
    text = "\n".join(r for r in refs if type(r) is str)
    return frozenset(_IPV4_LINE.findall(text))


def _encoded(key: Key) -> str | Key:
    """A key as the group's member set holds it: a literal as itself."""
    return key[1] if key[0] == "l" else key


def _lock(group: Model, kind: _Kind) -> tuple[str, int]:
    """Lock the group's row for the change (its member set is read, then replaced); its
    member set's hash and how many member rows it has now."""
    digest = (
        type(group)
        .objects.select_for_update()
        .filter(pk=group.pk)
        .values_list("member_set", flat=True)
        .get()
    )
    return digest, kind.member_model.objects.filter(group_id=group.pk).count()


def _row_keys(group: Model, kind: _Kind) -> list[str | Key]:
    """The group's member keys in order, read from its rows."""
    rows = kind.member_model.objects.filter(group_id=group.pk).order_by("index", "id")
    return [
        _encoded(kind.row_key(cols[0], cols[1], cols[2] if len(cols) > 2 else ""))
        for cols in rows.values_list(*kind.columns).iterator(chunk_size=10000)
    ]


FEW_ROWS = 8  # removed rows found by position, one index walk each (see _rows_at)


def _places(old: Sequence[str | Key], keys: Sequence[Key]) -> list[tuple[int, Key]] | None:
    """Where `keys` are in the member set, in order (`list.index` scans in C); None when
    more than FEW_ROWS."""
    found: list[tuple[int, Key]] = []
    for key in keys:
        start, encoded = 0, _encoded(key)
        while True:
            try:
                start = old.index(encoded, start) + 1
            except ValueError:
                break
            found.append((start - 1, key))
            if len(found) > FEW_ROWS:
                return None
    return sorted(found)


def _without(old: Sequence[str | Key], places: list[tuple[int, Key]]) -> list[str | Key]:
    """The member set without the members at `places` (slices joined in C)."""
    cuts = [n for n, _ in places]
    ends = [*cuts, len(old)]
    starts = [0, *(n + 1 for n in cuts)]
    return list(itertools.chain.from_iterable(old[a:b] for a, b in zip(starts, ends, strict=True)))


def _rows_at(
    group: Model, kind: _Kind, places: list[tuple[int, Key]]
) -> dict[Key, list[int]] | None:
    """Row ids of the members at `places` in the group's member set (its rows in (index, id)
    order are the set, which `_lock` checked by count): each an OFFSET walk of the group's
    order index, where a filter on the literal reads all 100,000 rows. None when a row is
    not the member expected there."""
    rows = kind.member_model.objects.filter(group_id=group.pk).order_by("index", "id")
    found: dict[Key, list[int]] = {}
    for n, key in places:
        row = next(iter(rows.values_list("pk", *kind.columns)[n : n + 1]), None)
        if row is None or kind.row_key(row[1], row[2], row[3] if len(row) > 3 else "") != key:
            return None
        found.setdefault(key, []).append(row[0])
    return found


def _keep_keys(group: Model, keys: list[str | Key]) -> None:
    digest = member_set_store(keys)
    type(group).objects.filter(pk=group.pk).update(member_set=digest)
    group.member_set = digest  # type: ignore[attr-defined]


def _first(pairs: list[tuple[Key, str]]) -> dict[Key, str]:
    """Each member once, by its first name, in the given order (add/remove are set ops)."""
    out: dict[Key, str] = {}
    for key, ref in pairs:
        out.setdefault(key, ref)
    return out


def _key_filter(kind: _Kind, keys: Sequence[Key]) -> Q:
    """Rows matching any of `keys` (one IN list per key kind)."""
    q = Q(pk__in=[])
    for tag, column in (("o", f"{kind.object_field}_id"), ("g", "subgroup_id"), ("l", "literal")):
        values = [v for t, v in keys if t == tag]
        if values:
            q |= Q(**{f"{column}__in": values})
    return q


def _stored_rows(group: Model, kind: _Kind, keys: Sequence[Key] | None) -> dict[Key, list[int]]:
    """Member key → its row ids (a document may list a member twice), for the given keys
    (None: every member of the group), in stored order."""
    qs = kind.member_model.objects.filter(group_id=group.pk).order_by("index", "id")
    found: dict[Key, list[int]] = {}
    parts = [None] if keys is None else list(chunks(list(keys)))
    for part in parts:
        sub = qs if part is None else qs.filter(_key_filter(kind, part))
        for pk, *cols in sub.values_list("pk", *kind.columns).iterator(chunk_size=10000):
            key = kind.row_key(cols[0], cols[1], cols[2] if len(cols) > 2 else "")
            found.setdefault(key, []).append(pk)
    return found


def _write(
    group: Model,
    kind: _Kind,
    added: Sequence[Key],
    removed_ids: list[int],
    first_index: int,
) -> None:
    """Delete and insert exactly these rows (raw bulk writes: no signals, no audit rows)."""
    if removed_ids:
        delete_rows(kind.member_model, removed_ids)
    _insert(group, kind, [(first_index + i, key) for i, key in enumerate(added)])


def _insert(group: Model, kind: _Kind, rows: Sequence[tuple[int, Key]]) -> None:
    """INSERT member rows from plain values (a model instance per member costs ~10 µs: a
    second for 100,000 members); every value is already what the column stores."""
    if _insert_literals(group, kind, rows):
        return
    meta = kind.member_model._meta
    columns = ["group", "index", *kind.columns]
    fields = [meta.get_field(c.removesuffix("_id")) for c in columns]
    gid = group.pk
    values = [
        (gid, i, v, None, "")
        if t == "o"
        else (gid, i, None, v, "")
        if t == "g"
        else (gid, i, None, None, v)
        for i, (t, v) in rows
    ]
    if len(fields) == 4:  # service groups have no literal column
        values = [row[:4] for row in values]
    if values:
        insert_rows(kind.member_model, fields, values)


def _insert_literals(group: Model, kind: _Kind, rows: Sequence[tuple[int, Key]]) -> bool:
    """SQLite, literals at consecutive indexes (creating or appending to a group of literals):
    one INSERT … SELECT over json_each of the list, 4× faster than executemany binding
    100,000 rows one by one. False when it does not apply (the caller inserts them)."""
    conn = connections[router.db_for_write(kind.member_model)]
    if conn.vendor != "sqlite" or len(rows) < 1000 or kind.member_model is not AddressGroupMember:
        return False
    start = rows[0][0]
    if any(tag != "l" or index != start + n for n, (index, (tag, _)) in enumerate(rows)):
        return False
    qn = conn.ops.quote_name
    with conn.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(kind.member_model._meta.db_table)} "
            f"({qn('group_id')}, {qn('index')}, {qn('address_id')}, {qn('subgroup_id')}, "
            f"{qn('literal')}) SELECT %s, %s + key, NULL, NULL, value FROM json_each(%s)",
            [group.pk, start, json.dumps([value for _, (_, value) in rows])],
        )
    return True


def _names_of(kind: _Kind, ids: list[int]) -> list[str]:
    """Member rows' names (for the audit entry of the removed ones), in stored order."""
    target = f"{kind.object_field}__name"
    extra = ("literal",) if kind.member_model is AddressGroupMember else ()
    names = []
    for part in chunks(ids):
        for name, subgroup, *literal in (
            kind.member_model.objects.filter(pk__in=part)
            .order_by("index", "id")
            .values_list(target, "subgroup__name", *extra)
        ):
            names.append(name or subgroup or literal[0])
    return names


def _finish(group: Model, diff: MemberDiff) -> MemberDiff:
    if diff.changed:
        record_members(group, added=diff.added, removed=diff.removed)
        revisions_touch(objects=[group])
    return diff


def _next_index(group: Model, kind: _Kind) -> int:
    top = kind.member_model.objects.filter(group_id=group.pk).aggregate(top=Max("index"))["top"]
    return 0 if top is None else top + 1


@gc_paused()  # 100,000 members are ~300,000 short-lived objects and no cycles
@transaction.atomic
def group_members_change(
    *,
    group: Model,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    index: NameIndex | None = None,
) -> MemberDiff:
    """Add and remove members by name (address/service names, group names, literals).

    Adding a member already there or removing one that is not is a no-op (idempotent);
    added members go last. A name in both lists is refused. Costs O(len(add) + len(remove)).
    """
    index = index or NameIndex.load()
    kind = _kind(group, index)
    to_add = _first(_resolve(group, kind, add, "add"))
    to_remove = _first(_resolve(group, kind, remove, "remove"))
    both = sorted(to_add[k] for k in to_add.keys() & to_remove.keys())
    if both:
        raise ValidationError({"remove": [f"{name!r} is also being added" for name in both]})
    digest, count = _lock(group, kind)
    old = stored_member_keys(digest, count)
    if old is None:
        stored = _stored_rows(group, kind, [*to_add, *to_remove])
    else:  # which members are there comes from the set: rows are read only to delete them
        present = set(old)
        stored = {k: [] for k in to_add if _encoded(k) in present}
        removing = [k for k in to_remove if _encoded(k) in present]
        places = _places(old, removing)
        at = _rows_at(group, kind, places) if places is not None else None
        stored |= at if at is not None else _stored_rows(group, kind, removing)
    new = {k: ref for k, ref in to_add.items() if k not in stored}
    gone_keys = {_encoded(k) for k in to_remove if k in stored}
    gone = [pk for k in to_remove for pk in stored.get(k, [])]
    removed = _names_of(kind, gone)
    _write(group, kind, list(new), gone, _next_index(group, kind))
    if new or gone:
        # the new set from the old one and the difference (else from the rows, once)
        if old is None:
            _keep_keys(group, _row_keys(group, kind))
        else:
            if at is not None and places:
                kept = _without(old, places)
            else:
                kept = [k for k in old if k not in gone_keys] if gone_keys else list(old)
            _keep_keys(group, kept + [_encoded(k) for k in new])
    diff = MemberDiff(added=list(new.values()), removed=removed, count=count + len(new) - len(gone))
    return _finish(group, diff)


@gc_paused()
@transaction.atomic
def group_members_set(
    *, group: Model, members: Sequence[str], index: NameIndex | None = None
) -> MemberDiff:
    """Replace the members with `members` (in that order), writing only the difference:
    the rows of removed members are deleted, new ones inserted, kept rows renumbered only
    if their order changed. A member listed twice keeps two rows (documents round-trip)."""
    index = index or NameIndex.load()
    kind = _kind(group, index)
    wanted = _resolve(group, kind, members, "members")
    _lock(group, kind)
    stored = _stored_rows(group, kind, None)
    order = {pk: n for n, pk in enumerate(pk for pks in stored.values() for pk in pks)}
    pool = {key: deque(pks) for key, pks in stored.items()}
    placed: list[tuple[int, Key, int | None]] = []  # (position, key, kept row id or None)
    for pos, (key, _ref) in enumerate(wanted):
        rows = pool.get(key)
        placed.append((pos, key, rows.popleft() if rows else None))
    gone = sorted((pk for rows in pool.values() for pk in rows), key=order.__getitem__)
    kept = [pk for _, _, pk in placed if pk is not None]
    added = [(pos, key) for pos, key, pk in placed if pk is None]
    removed = _names_of(kind, gone)
    last_kept = max((pos for pos, _, pk in placed if pk is not None), default=-1)
    if kept == sorted(kept, key=order.__getitem__) and all(pos > last_kept for pos, _ in added):
        new = [key for _, key in added]
        _write(group, kind, new, gone, _next_index(group, kind) if stored else 0)
    else:
        _renumber(group, kind, placed, gone)
    _keep_keys(group, [_encoded(key) for key, _ref in wanted])
    diff = MemberDiff(
        added=[wanted[pos][1] for pos, _ in added], removed=removed, count=len(wanted)
    )
    return _finish(group, diff)


def _renumber(
    group: Model, kind: _Kind, placed: list[tuple[int, Key, int | None]], gone: list[int]
) -> None:
    """The order changed: every member's index becomes its position (kept rows keep ids).
    Past REWRITE_FROM members the rows are rewritten instead: an UPDATE per row was 26 s
    for 100,000 members under load, a DELETE and one INSERT take about a second (nothing
    refers to a member row's id)."""
    if len(placed) > REWRITE_FROM:
        conn = connections[router.db_for_write(kind.member_model)]
        qn = conn.ops.quote_name
        with conn.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {qn(kind.member_model._meta.db_table)} WHERE {qn('group_id')} = %s",
                [group.pk],
            )
        _insert(group, kind, [(pos, key) for pos, key, _ in placed])
        return
    if gone:
        delete_rows(kind.member_model, gone)
    moved = [kind.member_model(pk=pk, index=pos) for pos, _, pk in placed if pk is not None]
    update_rows(kind.member_model, moved, ["index"])
    _insert(group, kind, [(pos, key) for pos, key, pk in placed if pk is None])
