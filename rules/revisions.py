"""Rule set revisions: capture, diff, roll back, four-eyes review, and the document to deploy.

A revision is the rule set's document form (`ruleset_dict`) plus every object it refers to,
transitively, so deploying an old revision gives exactly what was approved even after the
shared objects changed. The live database is the working copy; for a rule set that
`requires_approval`, each edit becomes a pending revision and deployments use the latest
approved one (`deployable_revision`, `deployable_document`).
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from difflib import SequenceMatcher
from functools import wraps
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model, Q
from django.utils import timezone

from compiler import values
from core.accounts import roles
from core.audit.choices import AuditAction
from core.audit.context import current, current_user
from core.audit.services import record
from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    NatRule,
    RevisionStatus,
    RuleAddress,
    RuleService,
    RuleSet,
    RuleSetRevision,
    Service,
    ServiceGroup,
    ServiceGroupMember,
)
from rules.selectors import policy_dict

OBJECT_KINDS = ("addresses", "address_groups", "services", "service_groups")
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
F = TypeVar("F", bound=Callable[..., Any])


# --- snapshots ---------------------------------------------------------------------------


def snapshot_hash(snapshot: dict) -> str:
    """sha256 of the canonical (sorted-key, compact) JSON of a snapshot."""
    text = json.dumps(
        snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _names(refs: Iterable[str]) -> set[str]:
    return {r for r in refs if isinstance(r, str) and not values.is_literal(r)}


def _snapshots(doc: dict) -> dict[str, dict]:
    """Rule set name → snapshot, cut out of one policy document."""
    objects = {kind: {o["name"]: o for o in doc.get(kind, [])} for kind in OBJECT_KINDS}
    out = {}
    for rs in doc["rulesets"]:
        want_a: set[str] = set()
        want_s: set[str] = set()
        for rule in rs.get("rules", []):
            want_a |= _names(rule.get("sources", [])) | _names(rule.get("destinations", []))
            want_s |= _names(rule.get("services", []))
        for nat in rs.get("nat", []):
            want_a |= _names(nat.get("sources", [])) | _names(nat.get("destinations", []))
        snap: dict[str, Any] = {"ruleset": rs}
        for fam_kinds, wanted in (
            (("addresses", "address_groups"), want_a),
            (("services", "service_groups"), want_s),
        ):
            items, groups = objects[fam_kinds[0]], objects[fam_kinds[1]]
            seen: set[str] = set()
            stack = sorted(wanted)
            while stack:
                name = stack.pop()
                if name in seen:
                    continue
                seen.add(name)
                if name in groups:
                    stack.extend(_names(groups[name].get("members", [])))
            snap[fam_kinds[0]] = [items[n] for n in sorted(seen) if n in items]
            snap[fam_kinds[1]] = [groups[n] for n in sorted(seen) if n in groups]
        out[rs["name"]] = snap
    return out


def ruleset_snapshot(ruleset: RuleSet) -> dict:
    """The rule set's content now: its document form and every object it refers to."""
    return _snapshots(policy_dict(rulesets=[ruleset]))[ruleset.name]


# --- capture -------------------------------------------------------------------------------


def _author_name(author) -> str:
    if author is not None:
        return author.get_username()
    ctx = current()
    user = current_user()
    return user.get_username() if user is not None else (ctx.actor or "system")


def _new_revision(
    *,
    ruleset: RuleSet,
    snapshot: dict,
    digest: str,
    author,
    message: str,
    parent: RuleSetRevision | None,
) -> RuleSetRevision:
    author = author if author is not None else current_user()
    status = RevisionStatus.PENDING if ruleset.requires_approval else RevisionStatus.DRAFT
    authors: set[int] = {author.pk} if author is not None else set()
    if status == RevisionStatus.PENDING:
        # A newer pending change contains the older one: it replaces it, and everyone who
        # contributed to it is an author (none of them may approve it).
        for older in ruleset.revisions.select_for_update().filter(status=RevisionStatus.PENDING):
            authors |= set(older.authors)
            older.status = RevisionStatus.SUPERSEDED
            older.save(update_fields=["status"])
    return RuleSetRevision.objects.create(
        ruleset=ruleset,
        number=(parent.number + 1) if parent else 1,
        snapshot=snapshot,
        hash=digest,
        author=author,
        author_name=_author_name(author),
        authors=sorted(authors),
        message=message or current().reason or "",
        parent=parent,
        status=status,
    )


def revision_capture(
    *, ruleset: RuleSet, author=None, message: str = "", snapshot: dict | None = None
) -> RuleSetRevision | None:
    """Record a new revision when the rule set's content differs from its latest one.

    Call inside the transaction of the change (the rule set row is locked to number
    revisions without gaps or duplicates). Returns None when nothing changed.
    """
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        snapshot = snapshot if snapshot is not None else ruleset_snapshot(ruleset)
        digest = snapshot_hash(snapshot)
        latest = ruleset.revisions.order_by("-number").first()
        if latest is not None and latest.hash == digest:
            return None
        return _new_revision(
            ruleset=ruleset,
            snapshot=snapshot,
            digest=digest,
            author=author,
            message=message,
            parent=latest,
        )


def revision_capture_all(
    *, author=None, message: str = "", rulesets: Iterable[RuleSet] | None = None
) -> list[RuleSetRevision]:
    """Capture every rule set (or those given) whose content changed, from one policy read.
    For imports and bulk writes, which touch many rule sets at once."""
    chosen = list(rulesets) if rulesets is not None else None
    if chosen is not None and not chosen:
        return []
    snaps = _snapshots(policy_dict(rulesets=chosen) if chosen is not None else policy_dict())
    qs = (
        RuleSet.objects.filter(pk__in=[r.pk for r in chosen])
        if chosen is not None
        else RuleSet.objects.all()
    )
    made = []
    for rs in qs.order_by("name"):
        rev = revision_capture(
            ruleset=rs, author=author, message=message, snapshot=snaps.get(rs.name)
        )
        if rev is not None:
            made.append(rev)
    return made


def rulesets_using(obj: Model) -> set[int]:
    """Ids of the rule sets whose content includes `obj` (directly or through groups)."""
    if isinstance(obj, RuleSet):
        return {obj.pk}
    if getattr(obj, "ruleset_id", None) is not None:  # a rule or NAT rule
        return {obj.ruleset_id}
    if isinstance(obj, (AddressObject, AddressGroup)):
        member_model, link_model, obj_field = AddressGroupMember, RuleAddress, "address"
        group_field = "group"
    elif isinstance(obj, (Service, ServiceGroup)):
        member_model, link_model, obj_field = ServiceGroupMember, RuleService, "service"
        group_field = "group"
    else:
        return set()
    is_group = isinstance(obj, (AddressGroup, ServiceGroup))
    groups: set[int] = {obj.pk} if is_group else set()
    frontier = set(
        member_model.objects.filter(**{"subgroup" if is_group else obj_field: obj.pk}).values_list(
            "group_id", flat=True
        )
    )
    while frontier - groups:
        frontier -= groups
        groups |= frontier
        frontier = set(
            member_model.objects.filter(subgroup_id__in=frontier).values_list("group_id", flat=True)
        )
    direct = Q(**{f"{group_field}_id__in": groups})
    if not is_group:
        direct |= Q(**{obj_field: obj.pk})
    found = set(
        link_model.objects.filter(direct)
        .order_by()
        .values_list("rule__ruleset_id", flat=True)
        .distinct()
    )
    if isinstance(obj, (AddressObject, AddressGroup)):
        names = {obj.name} | set(
            AddressGroup.objects.filter(pk__in=groups).values_list("name", flat=True)
        )
        for nat in NatRule.objects.values("ruleset_id", "sources", "destinations"):
            if names & set(nat["sources"] or []) or names & set(nat["destinations"] or []):
                found.add(nat["ruleset_id"])
    return found


_batch: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "rampart_revision_batch", default=None
)


@contextmanager
def revision_batch(*, message: str = "", all_rulesets: bool = False) -> Iterator[None]:
    """Defer captures to the end of the block: one revision per touched rule set, not one per
    step. `all_rulesets` also captures every rule set whose content changed (for writers
    that bypass the services, like bulk imports). Nested blocks join the outermost."""
    if _batch.get() is not None:
        yield
        return
    state: dict[str, Any] = {"ids": set(), "message": message}
    token = _batch.set(state)
    try:
        with transaction.atomic():
            yield
            _batch.set(None)
            if all_rulesets:
                revision_capture_all(message=state["message"])
            else:
                touched = list(RuleSet.objects.filter(pk__in=state["ids"]))
                revision_capture_all(message=state["message"], rulesets=touched)
    finally:
        _batch.reset(token)


def batched(func: F) -> F:
    """Decorator for services that call other services: one revision per call."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        with revision_batch():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def revisions_touch(
    *, rulesets: Iterable[RuleSet | int] = (), objects: Iterable[Model] = (), message: str = ""
) -> None:
    """A service changed these rule sets (or objects they use): capture what changed now, or
    at the end of the enclosing `revision_batch`."""
    ids = {getattr(r, "pk", r) for r in rulesets}
    for obj in objects:
        ids |= rulesets_using(obj)
    if not ids:
        return
    state = _batch.get()
    if state is not None:
        if state.get("suspended"):
            return
        state["ids"] |= ids
        state["message"] = state["message"] or message
        return
    for rs in RuleSet.objects.filter(pk__in=ids).order_by("name"):
        revision_capture(ruleset=rs, message=message)


def guard_ruleset_save(ruleset: RuleSet) -> None:
    """Turning approval off would let one person change and deploy alone: admins only."""
    if ruleset.pk is None or ruleset.requires_approval:
        return
    was = RuleSet.objects.filter(pk=ruleset.pk).values_list("requires_approval", flat=True).first()
    user = current_user()
    if was and user is not None and not roles.has_any(user, roles.CAN_ADMINISTER):
        raise ValidationError({"requires_approval": ["only an admin can turn approval off"]})


# --- diff ------------------------------------------------------------------------------------


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
    ra, rb = a.snapshot["ruleset"], b.snapshot["ruleset"]
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
        "objects": _objects_diff(a.snapshot, b.snapshot),
    }


# --- rollback --------------------------------------------------------------------------------


def _rule_data(rule: dict) -> dict:
    data = {k: v for k, v in rule.items() if k != "id"}
    data["uuid"] = rule["id"]
    return data


def _restore_objects(snapshot: dict) -> list[str]:
    """Recreate referenced objects that no longer exist; name those that now differ (they are
    shared with other rule sets, so they are left as they are)."""
    from rules import services

    conflicts: list[str] = []
    current_doc = {
        kind: {o["name"]: o for o in policy_dict(rulesets=[]).get(kind, [])}
        for kind in OBJECT_KINDS
    }
    for o in snapshot.get("addresses", []):
        if o["name"] not in current_doc["addresses"]:
            services.object_save(
                AddressObject(
                    name=o["name"], value=o["value"], description=o.get("description", "")
                )
            )
        elif current_doc["addresses"][o["name"]] != o:
            conflicts.append(f"address {o['name']}")
    for o in snapshot.get("services", []):
        if o["name"] not in current_doc["services"]:
            services.object_save(
                Service(
                    name=o["name"],
                    protocol=o["protocol"],
                    ports=o.get("ports", []),
                    source_ports=o.get("source_ports", []),
                    icmp_type=str(o.get("icmp_type", "") or ""),
                    description=o.get("description", ""),
                )
            )
        elif current_doc["services"][o["name"]] != o:
            conflicts.append(f"service {o['name']}")
    for kind, model, set_members in (
        ("address_groups", AddressGroup, services.address_group_set_members),
        ("service_groups", ServiceGroup, services.service_group_set_members),
    ):
        created = []
        for o in snapshot.get(kind, []):
            if o["name"] not in current_doc[kind]:
                created.append(
                    (
                        services.object_save(
                            model(name=o["name"], description=o.get("description", ""))
                        ),
                        o,
                    )
                )
            elif current_doc[kind][o["name"]] != o:
                conflicts.append(f"{model._meta.verbose_name} {o['name']}")
        for group, o in created:
            set_members(group=group, members=o.get("members", []))
    return conflicts


def _restore_ruleset(ruleset: RuleSet, doc: dict) -> None:
    from rules import services

    ruleset.description = doc.get("description", "")
    ruleset.assertions = doc.get("assertions", [])
    services.object_save(ruleset)
    for rule in ruleset.rules.all():  # one by one: each delete is audited by the signals
        rule.delete()
    for nat in ruleset.nat_rules.all():
        nat.delete()
    index = services.NameIndex.load()
    built = []
    for position, item in enumerate(doc.get("rules", []), start=1):
        rule, links = services.rule_build(ruleset=ruleset, data=_rule_data(item), index=index)
        rule.position = position
        rule.save()
        built.append((rule, links))
    services._save_links(built)
    for position, item in enumerate(doc.get("nat", []), start=1):
        nat = NatRule(
            ruleset=ruleset,
            position=position,
            uuid=item["id"],
            type=item["type"],
            enabled=item.get("enabled", True),
            **{
                k: item.get(k, [] if k in ("dports", "sources", "destinations") else "")
                for k in (
                    "in_interface",
                    "out_interface",
                    "protocol",
                    "dports",
                    "sources",
                    "destinations",
                    "to",
                    "comment",
                )
            },
        )
        nat.full_clean(exclude=["ruleset"])
        nat.save()


@transaction.atomic
def revision_rollback(
    *, revision: RuleSetRevision, author=None, message: str = ""
) -> RuleSetRevision:
    """Make `revision`'s content current again: restore the rule set's rows and record a new
    revision carrying exactly the old snapshot (pending again if the set needs approval)."""
    ruleset = RuleSet.objects.select_for_update().get(pk=revision.ruleset_id)
    revision = RuleSetRevision.objects.get(pk=revision.pk)
    latest = ruleset.revisions.order_by("-number").first()
    token = _batch.set({"ids": set(), "message": "", "suspended": True})
    try:
        conflicts = _restore_objects(revision.snapshot)
        _restore_ruleset(ruleset, revision.snapshot["ruleset"])
    finally:
        _batch.reset(token)
    message = message or f"roll back to r{revision.number}"
    new = _new_revision(
        ruleset=ruleset,
        snapshot=copy.deepcopy(revision.snapshot),
        digest=revision.hash,
        author=author,
        message=message,
        parent=latest,
    )
    record(
        AuditAction.REVISION_ROLLBACK,
        new,
        before={"revision": latest.number if latest else None},
        after={"revision": new.number, "content_of": revision.number, "hash": revision.hash},
        extra={"conflicts": conflicts} if conflicts else None,
        user=author,
    )
    new.conflicts = conflicts  # type: ignore[attr-defined]
    return new


# --- four-eyes review --------------------------------------------------------------------------


def _check_reviewer(revision: RuleSetRevision, reviewer) -> None:
    if reviewer is None or not getattr(reviewer, "is_authenticated", False):
        raise PermissionDenied("a signed-in approver must review a change")
    if reviewer.pk == revision.author_id or reviewer.pk in (revision.authors or []):
        raise PermissionDenied("you cannot review a change you made: another approver must")
    if not roles.has_any(reviewer, roles.CAN_APPROVE):
        raise PermissionDenied("only approvers can review changes")
    if revision.status != RevisionStatus.PENDING:
        raise ValidationError(
            {"status": [f"revision r{revision.number} is {revision.status}, not pending"]}
        )


def _review(
    *, revision: RuleSetRevision, reviewer, comment: str, status: str, action: str
) -> RuleSetRevision:
    revision = RuleSetRevision.objects.select_for_update().get(pk=revision.pk)
    _check_reviewer(revision, reviewer)
    before = {"status": revision.status}
    revision.status = status
    revision.reviewer = reviewer
    revision.reviewer_name = reviewer.get_username()
    revision.review_comment = comment
    revision.reviewed_at = timezone.now()
    revision.save(
        update_fields=["status", "reviewer", "reviewer_name", "review_comment", "reviewed_at"]
    )
    record(
        action,
        revision,
        before=before,
        after={"status": status, "comment": comment},
        reason=current().reason or comment,
        user=reviewer,
    )
    return revision


@transaction.atomic
def revision_approve(*, revision: RuleSetRevision, reviewer, comment: str = "") -> RuleSetRevision:
    """Approve a pending change; its author(s) cannot. Only approved revisions deploy."""
    return _review(
        revision=revision,
        reviewer=reviewer,
        comment=comment,
        status=RevisionStatus.APPROVED,
        action=AuditAction.REVISION_APPROVE,
    )


@transaction.atomic
def revision_reject(*, revision: RuleSetRevision, reviewer, comment: str) -> RuleSetRevision:
    """Reject a pending change (a comment saying why is required). The working copy keeps the
    edit; deployments keep using the last approved revision."""
    if not (comment or "").strip():
        raise ValidationError({"comment": ["say why the change is rejected"]})
    return _review(
        revision=revision,
        reviewer=reviewer,
        comment=comment,
        status=RevisionStatus.REJECTED,
        action=AuditAction.REVISION_REJECT,
    )


# --- deployment ------------------------------------------------------------------------------


def is_deployable(revision: RuleSetRevision, ruleset: RuleSet) -> bool:
    if ruleset.requires_approval:
        # drafts were recorded while the set needed no approval: they were accepted as such.
        return revision.status in (RevisionStatus.APPROVED, RevisionStatus.DRAFT)
    return revision.status != RevisionStatus.REJECTED


def deployable_revision(ruleset: RuleSet) -> RuleSetRevision | None:
    """The latest approved revision of a rule set that requires approval; else its latest."""
    qs = ruleset.revisions.order_by("-number")
    if ruleset.requires_approval:
        return qs.filter(status__in=[RevisionStatus.APPROVED, RevisionStatus.DRAFT]).first()
    return qs.exclude(status=RevisionStatus.REJECTED).first()


def _alias(name: str, tag: str) -> str:
    return f"{name[: 62 - len(tag)]}.{tag}"


def _strip(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "description"}


def _merge_snapshot(doc: dict, snapshot: dict, *, name: str, tag: str) -> dict:
    """Add a snapshot's objects to `doc` and return its rule set. Objects whose definition
    differs from the current one (and groups containing them) get a per-revision alias, so
    the rule set compiles against exactly the objects it was approved with."""
    index = {kind: {o["name"]: o for o in doc[kind]} for kind in OBJECT_KINDS}
    snap = {kind: {o["name"]: o for o in snapshot.get(kind, [])} for kind in OBJECT_KINDS}
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
    rename = {fam: {n: _alias(n, tag) for n in names} for fam, names in divergent.items()}

    def ren(fam: str, refs: list) -> list:
        return [rename[fam].get(r, r) for r in refs]

    for kind in OBJECT_KINDS:
        fam = _FAMILY[kind]
        for obj_name, obj in snap[kind].items():
            new = dict(obj, name=rename[fam].get(obj_name, obj_name))
            if "members" in new:
                new["members"] = ren(fam, obj["members"])
            if new["name"] not in index[kind]:
                doc[kind].append(new)
                index[kind][new["name"]] = new
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
    return ruleset


def deployable_document(devices: Iterable, *, revisions: Iterable[RuleSetRevision] = ()) -> dict:
    """The policy document (POLICY-FORMAT.md) a deployment to `devices` must compile.

    Devices and groups come from the database; each rule set from its deployable revision
    (or from `revisions`, to deploy a chosen one). Raises ValidationError when a rule set
    that requires approval has no approved revision, or a chosen revision may not deploy.
    Call it inside the deployment's transaction: it records a revision of any rule set whose
    live content was changed without one.
    """
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
    live_snapshots = _snapshots(doc)  # cut from the one read above, not one read per rule set
    for live in doc["rulesets"]:
        rs = by_name[live["name"]]
        # Writers that bypass the services (bulk imports) leave no revision: capture now, so
        # what deploys is always a recorded revision (a no-op when nothing changed).
        revision_capture(
            ruleset=rs, message="captured before deployment", snapshot=live_snapshots[rs.name]
        )
        rev = chosen.get(rs.pk)
        if rev is not None and not is_deployable(rev, rs):
            errors.append(
                f"{rs.name} r{rev.number} is {rev.status}: only approved revisions deploy"
            )
            continue
        rev = rev or deployable_revision(rs)
        if rev is None:
            errors.append(f"{rs.name} requires approval and has no approved revision")
            continue
        out.append(
            _merge_snapshot(doc, rev.snapshot, name=rs.name, tag=f"r{rev.number}-{rev.hash[:8]}")
        )
    if errors:
        raise ValidationError({"rulesets": errors})
    doc["rulesets"] = out
    for kind in OBJECT_KINDS:
        doc[kind].sort(key=lambda o: o["name"])
    return doc


# --- audit of rule writes that bypass model signals ------------------------------------------


def mark_created(rules: Iterable[Any]) -> None:
    """Rules inserted raw (no signals): `audit_rule_refs` records their creation, references
    included, in one entry each."""
    for rule in rules:
        rule._audit_created = True


def audit_rule_refs(rules_links: Iterable[tuple[Any, tuple[list, list]]]) -> None:
    """One entry per rule whose references were (re)written by raw inserts: its sources,
    destinations and services by name (link rows inserted in bulk have no ids of their own).
    Rules marked by `mark_created` get a full "create" entry instead."""
    from core.audit.services import record_objects

    created, updated, refs = [], [], {}
    for rule, (addr_links, svc_links) in rules_links:
        refs[rule.pk] = {
            "sources": [link.ref for link in addr_links if link.side == "src"],
            "destinations": [link.ref for link in addr_links if link.side == "dst"],
            "services": [link.ref for link in svc_links],
        }
        (created if getattr(rule, "_audit_created", False) else updated).append(rule)
    record_objects(AuditAction.CREATE, created, after=refs)
    record_objects(
        AuditAction.UPDATE,
        updated,
        after=refs,
        fields=(),
        name_of=lambda r: f"{r.ruleset.name} rule {r.uuid}",
    )
