"""Recording revisions: services report what they touched (`revisions_touch`), and a new
revision is captured for each rule set whose content changed, now or at the end of the
enclosing `revision_batch`. For a rule set that `requires_approval` the new revision is
pending and replaces any older pending one."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import Model, Q

from core.audit.context import current, current_user
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
from rules.revisions.member_sets import Encoded, compacted, snapshot_digest
from rules.revisions.snapshots import ruleset_snapshot, snapshots_of
from rules.selectors import policy_dict

F = TypeVar("F", bound=Callable[..., Any])


def _author_name(author) -> str:
    if author is not None:
        return author.get_username()
    ctx = current()
    user = current_user()
    return user.get_username() if user is not None else (ctx.actor or "system")


def new_revision(
    *,
    ruleset: RuleSet,
    snapshot: dict,
    digest: str,
    author,
    message: str,
    parent: RuleSetRevision | None,
    encoded: Encoded | None = None,
) -> RuleSetRevision:
    """Store the next revision of a (locked) rule set; pending when it requires approval.
    `snapshot` has its members inline (`digest` is its hash); it is stored with each group's
    members as a shared member set (`encoded`: its lists' keys, from `snapshot_digest`)."""
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
        snapshot=compacted(snapshot, encoded),
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
        digest, encoded = snapshot_digest(snapshot)
        # Not its snapshot: comparing hashes needs no decoding of a large group's members.
        latest = ruleset.revisions.defer("snapshot").order_by("-number").first()
        if latest is not None and latest.hash == digest:
            return None
        return new_revision(
            ruleset=ruleset,
            snapshot=snapshot,
            digest=digest,
            author=author,
            message=message,
            parent=latest,
            encoded=encoded,
        )


def revision_capture_all(
    *, author=None, message: str = "", rulesets: Iterable[RuleSet] | None = None
) -> list[RuleSetRevision]:
    """Capture every rule set (or those given) whose content changed, from one policy read.
    For imports and bulk writes, which touch many rule sets at once."""
    chosen = list(rulesets) if rulesets is not None else None
    if chosen is not None and not chosen:
        return []
    # Only the objects the chosen rule sets use: a write never reads a group it does not use.
    snaps = snapshots_of(
        policy_dict(rulesets=chosen, referenced_objects=True)
        if chosen is not None
        else policy_dict()
    )
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


def _containing_groups(member_model: type[Model], obj: Model, obj_field: str) -> set[int]:
    """Ids of the groups containing `obj` directly or through subgroups (a group: itself too)."""
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
    return groups


def rulesets_using(obj: Model) -> set[int]:
    """Ids of the rule sets whose content includes `obj` (directly or through groups)."""
    if isinstance(obj, RuleSet):
        return {obj.pk}
    if getattr(obj, "ruleset_id", None) is not None:  # a rule or NAT rule
        return {obj.ruleset_id}
    if isinstance(obj, (AddressObject, AddressGroup)):
        member_model, link_model, obj_field = AddressGroupMember, RuleAddress, "address"
    elif isinstance(obj, (Service, ServiceGroup)):
        member_model, link_model, obj_field = ServiceGroupMember, RuleService, "service"
    else:
        return set()
    groups = _containing_groups(member_model, obj, obj_field)
    direct = Q(group_id__in=groups)
    if not isinstance(obj, (AddressGroup, ServiceGroup)):
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


@contextmanager
def captures_suspended() -> Iterator[None]:
    """Record no revision for the writes in the block (a rollback records its own)."""
    token = _batch.set({"ids": set(), "message": "", "suspended": True})
    try:
        yield
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
