"""Revision snapshots refer to group member lists by hash (`rules.member_sets`).

A snapshot as stored holds `"member_set": <sha256>` in place of each group's `"members"`
list; `resolved` puts the lists back. The revision's hash stays the hash of the resolved
snapshot, so it means what it always meant and older (inline) snapshots, which still load
as they are, keep theirs. Each list is decoded once per process, not once per device.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from rampart_contract.canonical import canonical_json
from rules.member_sets import member_set_key, member_set_members, member_set_store
from rules.models import RuleSetRevision

GROUP_KINDS = ("address_groups", "service_groups")

# id() of a snapshot's member list -> its member_set_key: one encoding of a 100,000-member
# list serves the snapshot's hash and its member set
Encoded = dict[int, tuple[str, bytes]]


def snapshot_digest(snapshot: dict) -> tuple[str, Encoded]:
    """`snapshot_hash` of a snapshot with its members inline, and each member list's key.

    The snapshot is encoded with a placeholder per list and each list's own canonical bytes
    spliced into the hash where its placeholder is: the same bytes as encoding it whole
    (a list encodes alike alone and in place)."""
    nonce = uuid.uuid4().hex
    encoded: Encoded = {}
    tokens: dict[bytes, bytes] = {}
    stub = dict(snapshot)
    for kind in GROUP_KINDS:
        if kind not in snapshot:
            continue
        stub[kind] = []
        for group in snapshot[kind]:
            if "members" not in group:
                stub[kind].append(group)
                continue
            key = encoded.setdefault(id(group["members"]), member_set_key(group["members"]))
            placeholder = f"{nonce}-{len(tokens)}"
            tokens[json.dumps(placeholder).encode()] = key[1]
            stub[kind].append(dict(group, members=placeholder))
    text = canonical_json(stub, default=str)
    digest = hashlib.sha256()
    for token, data in sorted(tokens.items(), key=lambda item: text.index(item[0])):
        before, text = text.split(token, 1)
        digest.update(before)
        digest.update(data)
    digest.update(text)
    return digest.hexdigest(), encoded


def compacted(snapshot: dict, encoded: Encoded | None = None) -> dict:
    """The snapshot as stored: each group's member list replaced by its set's hash, the set
    written if new (`encoded`: the lists' keys from `snapshot_digest`). Groups already
    compact stay as they are."""
    out = dict(snapshot)
    for kind in GROUP_KINDS:
        if kind in snapshot:
            out[kind] = [_compact_group(g, encoded or {}) for g in snapshot[kind]]
    return out


def _compact_group(group: dict, encoded: Encoded) -> dict:
    if "members" not in group:
        return group
    out = {k: v for k, v in group.items() if k != "members"}
    members = group["members"]
    out["member_set"] = member_set_store(members, encoded.get(id(members)))
    return out


def resolved(snapshot: dict) -> dict:
    """The snapshot with every group's members inline (what the revision's hash covers);
    inline snapshots (recorded before member sets) come back as they are."""
    if not any("member_set" in g for kind in GROUP_KINDS for g in snapshot.get(kind, [])):
        return snapshot
    out = dict(snapshot)
    for kind in GROUP_KINDS:
        if kind in snapshot:
            out[kind] = [_resolve_group(g) for g in snapshot[kind]]
    return out


def _resolve_group(group: dict) -> dict:
    if "member_set" not in group:
        return group
    out = {k: v for k, v in group.items() if k != "member_set"}
    out["members"] = list(member_set_members(group["member_set"]))
    return out


def revision_snapshot(revision: RuleSetRevision) -> dict:
    """A revision's snapshot with its members inline, resolved once per instance."""
    cached = revision.__dict__.get("_resolved_snapshot")
    if cached is None:
        cached = revision.__dict__["_resolved_snapshot"] = resolved(revision.snapshot)
    return cached
