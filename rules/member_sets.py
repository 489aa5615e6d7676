"""Content-addressed member lists (`rules.models.MemberSet`): a list stored once as one
compressed row under the sha256 of its canonical JSON, whoever stores it (revision
snapshots, a group's current members), and decoded once per process: the hash is the
content, so the cache never goes stale.

A group's current members are kept here too, as keys (`AddressGroup.member_set`): a
literal as its string, an object or subgroup as ["o", id] / ["g", id] (names are looked up
when read, so renaming a member changes nothing stored). A group of literals has the same
list as its names: one row serves the group and its revisions.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from rampart_contract.canonical import canonical_json
from rules.models import MemberSet

CACHE_MEMBERS = 2_000_000  # members kept decoded per process (~100 MB at most)

_decoded: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
_refs: dict[str, frozenset[tuple]] = {}  # per decoded set: its non-literal keys
_cached_members = 0
_last_key: tuple[tuple[Any, ...], tuple[str, bytes]] | None = None


def member_set_key(members: Sequence[Any]) -> tuple[str, bytes]:
    """(sha256 hex, canonical JSON bytes) of a member list, in its order. The last list
    encoded is remembered: a group of literals stores its keys, then its revision the same
    list as names (comparing the lists costs a pointer check per member, encoding them ~16 ms
    per 100,000)."""
    global _last_key
    as_tuple = tuple(members)
    if _last_key is not None and _last_key[0] == as_tuple:
        return _last_key[1]
    data = canonical_json(list(members))
    key = hashlib.sha256(data).hexdigest(), data
    _last_key = (as_tuple, key)
    return key


def member_set_store(members: Sequence[Any], key: tuple[str, bytes] | None = None) -> str:
    """The hash of `members`, storing the list unless a row already holds it (concurrent
    writers of the same list both succeed: the insert ignores the conflict). Always asked of
    the database: a set cached here may come from a transaction that was rolled back.
    `key`: its `member_set_key`, when the caller has it already."""
    digest, data = key or member_set_key(members)
    if not MemberSet.objects.filter(pk=digest).exists():
        MemberSet.objects.bulk_create(
            [MemberSet(hash=digest, count=len(members), data=zlib.compress(data, 1))],
            ignore_conflicts=True,
        )
    _remember(digest, tuple(members), data)
    return digest


def member_set_members(digest: str) -> tuple[Any, ...]:
    """The member list stored under `digest` (KeyError: no such set)."""
    found = _decoded.get(digest)
    if found is not None:
        _decoded.move_to_end(digest)
        return found
    blob = MemberSet.objects.filter(pk=digest).values_list("data", flat=True).first()
    if blob is None:
        raise KeyError(f"member set {digest} is not stored")
    data = zlib.decompress(bytes(blob))
    loaded = json.loads(data)
    if b"[" in data[1:]:  # group member keys: [tag, id] pairs as hashable tuples
        members = tuple(tuple(m) if isinstance(m, list) else m for m in loaded)
    else:
        members = tuple(loaded)
    _remember(digest, members, data)
    return members


def _remember(digest: str, members: tuple[Any, ...], data: bytes) -> None:
    global _cached_members
    if digest in _decoded:
        _decoded.move_to_end(digest)
        return
    _decoded[digest] = members
    # keys that are lists ([tag, id]) show as a "[" after the opening one: a list of
    # literals (no address has one) is known to have none without a scan
    _refs[digest] = (
        frozenset(k for k in members if type(k) is tuple) if b"[" in data[1:] else frozenset()
    )
    _cached_members += len(members)
    while _cached_members > CACHE_MEMBERS and len(_decoded) > 1:
        evicted, gone = _decoded.popitem(last=False)
        _refs.pop(evicted, None)
        _cached_members -= len(gone)


def stored_member_keys(digest: str, rows: int) -> tuple[Any, ...] | None:
    """A group's member keys from its member set, or None when there is none or it does not
    hold `rows` members (the rows were written by something that did not keep it)."""
    if not digest:
        return None
    try:
        keys = member_set_members(digest)
    except KeyError:
        return None
    return keys if len(keys) == rows else None


def member_set_refs(digest: str) -> frozenset[tuple]:
    """The keys of a set of group member keys that are not literals (["o", id], ["g", id]):
    scanned once per set and process, so reading a group of literals does no per-member work."""
    found = _refs.get(digest)
    if found is None:
        found = frozenset(k for k in member_set_members(digest) if type(k) is tuple)
    return found
