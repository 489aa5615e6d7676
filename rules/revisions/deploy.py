"""Which revision of each rule set deploys, and the policy document a deployment compiles:
live devices and groups, each rule set from its deployable revision, with the objects it was
approved with (aliased per revision where they differ from today's)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import NamedTuple

from django.core.exceptions import ValidationError

from rules.models import RevisionStatus, RuleSet, RuleSetRevision
from rules.revisions.capture import revision_capture
from rules.revisions.member_sets import revision_snapshot
from rules.revisions.snapshots import OBJECT_KINDS, snapshot_hash, snapshots_of
from rules.selectors import policy_dict

_FAMILY = {
    "addresses": "address",
    "address_groups": "address",
    "services": "service",
    "service_groups": "service",
}
_TWIN = {
    "addresses": "address_groups",
    "address_groups": "addresses",
    "services": "service_groups",
    "service_groups": "services",
}


def is_deployable(revision: RuleSetRevision, ruleset: RuleSet) -> bool:
    """Under approval only approved revisions deploy: drafts recorded before approval was
    switched on were never reviewed (switching it on made the latest one pending)."""
    if ruleset.requires_approval:
        return revision.status == RevisionStatus.APPROVED
    return revision.status != RevisionStatus.REJECTED


def deployable_revision(ruleset: RuleSet) -> RuleSetRevision | None:
    """The latest approved revision of a rule set that requires approval; else its latest."""
    qs = ruleset.revisions.order_by("-number")
    if ruleset.requires_approval:
        return qs.filter(status=RevisionStatus.APPROVED).first()
    return qs.exclude(status=RevisionStatus.REJECTED).first()


def _alias(name: str, tag: str) -> str:
    return f"{name[: 62 - len(tag)]}.{tag}"


def _strip(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "description"}


def _divergent(index: dict[str, dict], snap: dict[str, dict]) -> dict[str, set[str]]:
    """Per family, the snapshot's objects that differ from (or clash with) the current ones,
    and the groups that contain them."""
    divergent: dict[str, set[str]] = {"address": set(), "service": set()}
    for kind in OBJECT_KINDS:
        for obj_name, obj in snap[kind].items():
            cur = index[kind].get(obj_name)
            if obj_name in index[_TWIN[kind]] or (cur is not None and _strip(cur) != _strip(obj)):
                divergent[_FAMILY[kind]].add(obj_name)
    grown = True
    while grown:
        grown = False
        for kind in ("address_groups", "service_groups"):
            fam = divergent[_FAMILY[kind]]
            for obj_name, obj in snap[kind].items():
                if obj_name not in fam and fam & set(obj.get("members", [])):
                    fam.add(obj_name)
                    grown = True
    return divergent


def _renamed_ruleset(snapshot: dict, name: str, rename: dict[str, dict[str, str]]) -> dict:
    """The snapshot's rule set under `name`, its references renamed to the aliases."""

    def ren(fam: str, refs: list) -> list:
        return [rename[fam].get(r, r) for r in refs]

    ruleset = copy.deepcopy(snapshot["ruleset"])
    ruleset["name"] = name
    for rule in ruleset.get("rules", []):
        for key, fam in (
            ("sources", "address"),
            ("destinations", "address"),
            ("services", "service"),
        ):
            if key in rule:
                rule[key] = ren(fam, rule[key])
    for nat in ruleset.get("nat", []):
        for key in ("sources", "destinations"):
            if key in nat:
                nat[key] = ren("address", nat[key])
    zones = rename.get("zone", {})
    for item in (*ruleset.get("rules", []), *ruleset.get("nat", [])):
        for key in ("in_zone", "out_zone"):
            if item.get(key) in zones:
                item[key] = zones[item[key]]
    return ruleset


def _merge_snapshot(doc: dict, snapshot: dict, *, name: str, tag: str) -> dict:
    """Add a snapshot's objects to `doc` and return its rule set. Objects whose definition
    differs from the current one (and groups containing them) get a per-revision alias, so
    the rule set compiles against exactly the objects it was approved with."""
    index = {kind: {o["name"]: o for o in doc[kind]} for kind in OBJECT_KINDS}
    snap = {kind: {o["name"]: o for o in snapshot.get(kind, [])} for kind in OBJECT_KINDS}
    divergent = _divergent(index, snap)
    rename = {fam: {n: _alias(n, tag) for n in names} for fam, names in divergent.items()}
    rename["zone"] = _merge_zones(doc, snapshot.get("zones", []), tag)
    for kind in OBJECT_KINDS:
        fam = _FAMILY[kind]
        for obj_name, obj in snap[kind].items():
            new = dict(obj, name=rename[fam].get(obj_name, obj_name))
            if "members" in new:
                new["members"] = [rename[fam].get(r, r) for r in obj["members"]]
            if new["name"] not in index[kind]:
                doc[kind].append(new)
                index[kind][new["name"]] = new
    return _renamed_ruleset(snapshot, name, rename)


def _merge_zones(doc: dict, zones: list[dict], tag: str) -> dict[str, str]:
    """Add a snapshot's zones to `doc`; one whose interfaces differ from today's zone of that
    name is added under a per-revision alias (returned as old name -> alias), so the rule set
    matches exactly the interfaces it was approved with."""
    current = {z["name"]: z for z in doc.setdefault("zones", [])}
    rename: dict[str, str] = {}
    for zone in zones:
        name = zone["name"]
        if name in current and _strip(current[name]) != _strip(zone):
            name = rename[zone["name"]] = _alias(zone["name"], tag)
        if name not in current:
            current[name] = dict(zone, name=name)
            doc["zones"].append(current[name])
    if not doc["zones"]:
        del doc["zones"]
    return rename


class Deployable(NamedTuple):
    """A document to deploy and the revision each of its rule sets comes from:
    {rule set name: {id, number, hash, status}} (id None: the revision a deployment would
    record for live content that has none yet)."""

    document: dict
    revisions: dict[str, dict]


def deployable_document(devices: Iterable, *, revisions: Iterable[RuleSetRevision] = ()) -> dict:
    """The policy document (POLICY-FORMAT.md) a deployment to `devices` must compile.

    Devices and groups come from the database; each rule set from its deployable revision
    (or from `revisions`, to deploy a chosen one). Raises ValidationError when a rule set
    that requires approval has no approved revision, or a chosen revision may not deploy.
    Call it inside the deployment's transaction: it records a revision of any rule set whose
    live content was changed without one.
    """
    return deployable_policy(devices, revisions=revisions).document


def candidate_document(devices: Iterable, *, revisions: Iterable[RuleSetRevision] = ()) -> dict:
    """What `deployable_document` would return now, writing nothing (previews, the API's
    candidate bundle and trace): a rule set whose live content has no revision yet counts
    as the revision a deployment would record for it."""
    return deployable_policy(devices, revisions=revisions, capture=False).document


def deployable_policy(
    devices: Iterable, *, revisions: Iterable[RuleSetRevision] = (), capture: bool = True
) -> Deployable:
    """`deployable_document` (capture) or `candidate_document` (no capture), with the
    revision every rule set of it comes from (what a deployment records)."""
    doc = policy_dict(devices=list(devices))
    by_name = {
        rs.name: rs for rs in RuleSet.objects.filter(name__in=[r["name"] for r in doc["rulesets"]])
    }
    chosen = {r.ruleset_id: r for r in revisions}
    errors: list[str] = []
    used = {rs.pk for rs in by_name.values()}
    for rev in chosen.values():
        if rev.ruleset_id not in used:
            errors.append(
                f"revision r{rev.number} of {rev.ruleset}: that rule set is not on these devices"
            )
    out = []
    recorded: dict[str, dict] = {}
    live_snapshots = snapshots_of(doc)  # cut from the one read above, not one read per rule set
    for live in doc["rulesets"]:
        rs = by_name[live["name"]]
        found = _deployable_snapshot(
            rs, chosen.get(rs.pk), live_snapshots[rs.name], capture, errors
        )
        if found is not None:
            tag, snapshot, recorded[rs.name] = found
            out.append(_merge_snapshot(doc, snapshot, name=rs.name, tag=tag))
    if errors:
        raise ValidationError({"rulesets": errors})
    doc["rulesets"] = out
    for kind in (*OBJECT_KINDS, "zones"):
        doc.get(kind, []).sort(key=lambda o: o["name"])
    return Deployable(doc, recorded)


def _recorded(rev: RuleSetRevision) -> dict:
    return {"id": rev.pk, "number": rev.number, "hash": rev.hash, "status": rev.status}


def _deployable_snapshot(
    rs: RuleSet, rev: RuleSetRevision | None, live: dict, capture: bool, errors: list[str]
) -> tuple[str, dict, dict] | None:
    """(alias tag, snapshot, recorded revision) of the revision of `rs` that deploys, or None
    with an error."""
    if rev is not None and not is_deployable(rev, rs):
        errors.append(f"{rs.name} r{rev.number} is {rev.status}: only approved revisions deploy")
        return None
    if capture:
        # Writers that bypass the services (bulk imports) leave no revision: capture now, so
        # what deploys is always a recorded revision (a no-op when nothing changed).
        revision_capture(ruleset=rs, message="captured before deployment", snapshot=live)
    elif rev is None and not rs.requires_approval:
        latest = rs.revisions.order_by("-number").first()
        digest = snapshot_hash(live)
        if latest is None or latest.hash != digest:
            # the revision a deployment would capture now (it would be the deployable one)
            number = (latest.number if latest else 0) + 1
            recorded = {"id": None, "number": number, "hash": digest, "status": "uncaptured"}
            return f"r{number}-{digest[:8]}", live, recorded
    rev = rev or deployable_revision(rs)
    if rev is None:
        errors.append(f"{rs.name} requires approval and has no approved revision")
        return None
    return f"r{rev.number}-{rev.hash[:8]}", revision_snapshot(rev), _recorded(rev)
