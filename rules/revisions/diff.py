"""What changed between two revisions: settings, rules and NAT rules matched by id (added,
removed, changed fields, moved), and the objects by name."""

from __future__ import annotations

from difflib import SequenceMatcher

from rules.models import RuleSetRevision
from rules.revisions.member_sets import revision_snapshot
from rules.revisions.snapshots import OBJECT_KINDS


def _list_diff(before: list[dict], after: list[dict]) -> dict:
    """Items matched by `id`: added, removed, changed (with field names), moved."""
    a = {item.get("id"): (i, item) for i, item in enumerate(before)}
    b = {item.get("id"): (i, item) for i, item in enumerate(after)}
    added = [{"id": k, "position": i + 1, "rule": item} for k, (i, item) in b.items() if k not in a]
    removed = [
        {"id": k, "position": i + 1, "rule": item} for k, (i, item) in a.items() if k not in b
    ]
    changed = []
    for k, (_, new) in b.items():
        if k in a:
            old = a[k][1]
            fields = sorted(f for f in set(old) | set(new) if old.get(f) != new.get(f))
            if fields:
                changed.append(
                    {
                        "id": k,
                        "fields": fields,
                        "before": {f: old.get(f) for f in fields},
                        "after": {f: new.get(f) for f in fields},
                    }
                )
    common_a = [item.get("id") for item in before if item.get("id") in b]
    common_b = [item.get("id") for item in after if item.get("id") in a]
    stable: set = set()
    for block in SequenceMatcher(None, common_a, common_b, autojunk=False).get_matching_blocks():
        stable.update(common_a[block.a : block.a + block.size])
    moved = [{"id": k, "from": a[k][0] + 1, "to": b[k][0] + 1} for k in common_b if k not in stable]
    return {"added": added, "removed": removed, "changed": changed, "moved": moved}


def _objects_diff(a: dict, b: dict) -> dict:
    out = {}
    for kind in OBJECT_KINDS:
        old = {o["name"]: o for o in a.get(kind, [])}
        new = {o["name"]: o for o in b.get(kind, [])}
        out[kind] = {
            "added": sorted(set(new) - set(old)),
            "removed": sorted(set(old) - set(new)),
            "changed": sorted(n for n in set(old) & set(new) if old[n] != new[n]),
        }
    return out


def revision_diff(a: RuleSetRevision, b: RuleSetRevision) -> dict:
    """What changed from revision `a` to revision `b`, rule by rule (matched by rule id)."""
    sa, sb = revision_snapshot(a), revision_snapshot(b)
    ra, rb = sa["ruleset"], sb["ruleset"]
    settings_changed = sorted(
        k for k in (set(ra) | set(rb)) - {"rules", "nat"} if ra.get(k) != rb.get(k)
    )
    return {
        "from": {"id": a.pk, "number": a.number, "hash": a.hash},
        "to": {"id": b.pk, "number": b.number, "hash": b.hash},
        "identical": a.hash == b.hash,
        "ruleset": {
            "changed": settings_changed,
            "before": {k: ra.get(k) for k in settings_changed},
            "after": {k: rb.get(k) for k in settings_changed},
        },
        "rules": _list_diff(ra.get("rules", []), rb.get("rules", [])),
        "nat": _list_diff(ra.get("nat", []), rb.get("nat", [])),
        "objects": _objects_diff(sa, sb),
    }
