"""Writing audit entries. Every write joins the caller's transaction: a change that rolls
back takes its entries with it, and a committed change has its entries committed too.

Appends are serialised through `AuditChainHead` (its row is updated first, which locks it
until the transaction ends), so concurrent writers never fork the hash chain. Each entry
is sealed with a MAC keyed by the audit key (core/audit/chain.py, keys.py); checking the
chain lives in verification.py (`verify` is re-exported here for existing callers).
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import tzinfo
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models, router, transaction
from django.db.models import F
from django.db.models.base import ModelState
from django.utils import timezone

from core.bulk_rows import insert_rows

from .chain import entry_mac
from .choices import AuditChain
from .context import AuditContext, actor_of, current, is_disabled
from .keys import audit_key
from .models import AuditChainHead, AuditEntry
from .verification import verify as verify

REDACTED = "[redacted]"
# Field names whose values never enter the log (password hashes, token keys/digests, keys).
_SECRET_RE = re.compile(
    r"password|secret|private|digest|passphrase|token_key|(^|_)key$|^token$", re.I
)
# Bookkeeping fields: a save that changes only these is not an audited change.
IGNORED_FIELDS = frozenset(
    {
        "last_updated",
        "last_login",
        "last_seen_at",
        "last_run_at",
        "total_run_count",
        "date_changed",
        "last_update",
    }
)
BULK_BATCH = 2000
RAW_INSERT_FROM = 50  # entries per append from which the raw executemany path is used


# --- object snapshots ------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def is_secret_field(name: str) -> bool:
    return bool(_SECRET_RE.search(name)) and "public" not in name


_ENCODER = DjangoJSONEncoder()
_PLAIN = (str, int, float, bool, type(None))


def _jsonable(value: Any) -> Any:
    """Plain JSON types only (dates, UUIDs, decimals as DjangoJSONEncoder writes them), so
    the stored value reads back exactly as it was hashed."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, tzinfo):  # django_celery_beat's CrontabSchedule.timezone
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):  # a BinaryField: its size only
        return f"[{len(value)} bytes]"
    return _ENCODER.default(value)


def raw_state(instance: models.Model) -> dict[str, Any]:
    """Concrete field values (foreign keys as ids), unredacted: for comparing only."""
    return {f.name: f.value_from_object(instance) for f in instance._meta.concrete_fields}


def redact(state: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in state.items():
        if is_secret_field(name) and value not in (None, ""):
            out[name] = REDACTED
        elif name == "snapshot" and isinstance(value, dict):
            out[name] = "[snapshot: see the revision]"
        else:
            out[name] = value
    return _jsonable(out)


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    if before is None or after is None:
        return []
    return sorted(k for k in after if k not in IGNORED_FIELDS and before.get(k) != after.get(k))


def object_type_of(obj: models.Model | type[models.Model]) -> str:
    return obj._meta.label_lower


def object_id_of(obj: models.Model) -> str:
    if obj._meta.label_lower == "knox.authtoken":
        return (getattr(obj, "token_key", "") or "")[:8]
    return str(obj.pk) if obj.pk is not None else ""


def object_name_of(obj: models.Model) -> str:
    """A readable name that never costs a query: `name`/`username`/`uuid` when the model has
    one, `str(obj)` when every relation it may follow is already loaded, else type and id."""
    meta = obj._meta
    if meta.label_lower == "knox.authtoken":
        return f"token {(obj.token_key or '')[:8]} of user {obj.user_id}"
    names = {f.name for f in meta.concrete_fields}
    for field in ("name", "username"):
        if field in names and getattr(obj, field):
            return str(getattr(obj, field))[:200]
    if "uuid" in names:
        return f"{meta.verbose_name} {obj.uuid}"
    if all(f.is_cached(obj) for f in meta.concrete_fields if f.is_relation):
        try:
            return str(obj)[:200]
        except Exception:  # a __str__ that follows a deleted relation
            pass
    return f"{meta.verbose_name} {obj.pk}"


# --- writing ---------------------------------------------------------------------------


def _new_entry(**values: Any) -> AuditEntry:
    """An unsaved entry without Model.__init__'s per-field work (a third of the cost of
    appending entries in bulk); every field is given by `_build`."""
    entry = AuditEntry.__new__(AuditEntry)
    entry._state = ModelState()
    entry.__dict__.update(values, id=None, seq=None, prev_hash="", hash="")
    return entry


def _build(
    action: str,
    ctx: AuditContext,
    *,
    now,
    object_type: str = "",
    object_id: Any = "",
    name: str = "",
    before: Any = None,
    after: Any = None,
    changed: Sequence[str] | None = None,
    reason: str | None = None,
    ticket: str | None = None,
    extra: dict | None = None,
    user: Any = None,
) -> AuditEntry:
    actor, user_id, token = actor_of(ctx)
    if user is not None and user.pk != user_id:  # a service acting for a named user
        actor, user_id, token = user.get_username(), user.pk, ""
    if isinstance(before, dict) and isinstance(after, dict) and changed is None:
        changed = changed_fields(before, after)
    return _new_entry(
        time=now,
        actor=actor[:150],
        user_id=user_id,
        token=token,
        action=action,
        object_type=object_type,
        object_id=str(object_id if object_id is not None else "")[:64],
        object_name=(name or "")[:200],
        before=_jsonable(before),
        after=_jsonable(after),
        changed=list(changed or []),
        reason=reason if reason is not None else ctx.reason,
        ticket=(ticket if ticket is not None else ctx.ticket)[:100],
        request_id=ctx.request_id[:64],
        client_ip=ctx.client_ip[:45],
        user_agent=ctx.user_agent[:300],
        channel=ctx.channel,
        extra=_jsonable({**ctx.extra, **(extra or {})}),
    )


def _append(entries: list[AuditEntry]) -> list[AuditEntry]:
    """Chain and insert `entries` in the caller's transaction (one lock, one bulk insert)."""
    if not entries:
        return entries
    # no savepoint inside the caller's transaction: a failed append must abort it anyway
    with transaction.atomic(savepoint=False):
        # UPDATE first: on PostgreSQL it row-locks the head until commit; on SQLite it takes
        # the write lock before we read, so two writers cannot both read the same head.
        if not AuditChainHead.objects.filter(pk=1).update(seq=F("seq") + len(entries)):
            AuditChainHead.objects.bulk_create([AuditChainHead(pk=1)], ignore_conflicts=True)
            AuditChainHead.objects.filter(pk=1).update(seq=F("seq") + len(entries))
        head = AuditChainHead.objects.get(pk=1)
        seq, prev, key = head.seq - len(entries), head.hash, audit_key()
        for entry in entries:
            seq += 1
            entry.seq, entry.prev_hash, entry.chain = seq, prev, AuditChain.KEYED
            entry.hash = prev = entry_mac(entry, key)
        if len(entries) < RAW_INSERT_FROM:
            AuditEntry.objects.bulk_create(entries, batch_size=BULK_BATCH)
        else:
            _insert_raw(entries)
        AuditChainHead.objects.filter(pk=1).update(hash=prev)
    return entries


def _insert_raw(entries: list[AuditEntry]) -> None:
    """In one go (core.bulk_rows): Django's bulk_create compiles a statement per ~45 rows
    on SQLite, which dominated a 10,000-rule bulk write. Ids are not set on the objects."""
    conn = connections[router.db_for_write(AuditEntry)]
    fields = [f for f in AuditEntry._meta.concrete_fields if not f.primary_key]
    # Only JSON and datetime values need adapting; the others are already str/int/None.
    adapt = [
        (f.attname, f if isinstance(f, (models.JSONField, models.DateTimeField)) else None)
        for f in fields
    ]
    insert_rows(
        AuditEntry,
        fields,
        (
            [
                f.get_db_prep_save(e.__dict__[name], conn) if f is not None else e.__dict__[name]
                for name, f in adapt
            ]
            for e in entries
        ),
    )


def record(
    action: str,
    obj: models.Model | None = None,
    *,
    object_type: str | None = None,
    object_id: Any = None,
    name: str | None = None,
    before: Any = None,
    after: Any = None,
    changed: Sequence[str] | None = None,
    reason: str | None = None,
    ticket: str | None = None,
    extra: dict | None = None,
    user: Any = None,
) -> AuditEntry | None:
    """Write one entry for an explicit event (deployment state, drift, import, approval...).

    `obj` fills type/id/name; `before`/`after` are JSON-able (give plain dicts, redacted by
    the caller if they hold secrets). Actor, channel, request id, IP and reason come from
    the current `audit_context`; `user` names the acting user when a service is called for
    one outside a request.
    """
    if is_disabled():
        return None
    entry = _build(
        action,
        current(),
        now=timezone.now(),
        object_type=object_type or (object_type_of(obj) if obj is not None else ""),
        object_id=object_id
        if object_id is not None
        else (object_id_of(obj) if obj is not None else ""),
        name=name if name is not None else (object_name_of(obj) if obj is not None else ""),
        before=before,
        after=after,
        changed=changed,
        reason=reason,
        ticket=ticket,
        extra=extra,
        user=user,
    )
    pending = _pending.get()
    if pending is not None:
        pending.append(entry)  # chained when the enclosing `deferred()` block ends
        return entry
    return _append([entry])[0]


def record_members(
    obj: models.Model, *, added: Sequence[str], removed: Sequence[str], field: str = "members"
) -> AuditEntry | None:
    """One entry for a change of a set-valued field (a group's members): the added and
    removed elements, never one entry per element; chained like every other entry."""
    if not added and not removed:
        return None
    return record(
        "update",
        obj,
        after={field: {"added": list(added), "removed": list(removed)}},
        changed=[field],
        extra={"added": len(added), "removed": len(removed)},
    )


_pending: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "rampart_audit_pending", default=None
)


@contextmanager
def deferred(using: str | None = None) -> Iterator[None]:
    """Collect the entries written inside the block and chain them in one append at its end,
    in the same transaction: a cascade deleting 10,000 rules locks the chain once, not
    10,000 times. Nested blocks join the outermost."""
    if _pending.get() is not None:
        yield
        return
    token = _pending.set([])
    try:
        with transaction.atomic(using=using):
            yield
            entries = _pending.get() or []
            _pending.set(None)
            _append(entries)
    finally:
        _pending.reset(token)


def record_objects(
    action: str,
    objs: Iterable[models.Model],
    *,
    before: dict[Any, dict] | None = None,
    after: dict[Any, dict] | None = None,
    fields: Sequence[str] | None = None,
    name_of: Callable[[models.Model], str] | None = None,
    extra: dict | None = None,
) -> int:
    """One entry per object for writes that bypass signals (bulk_create, bulk_update, raw
    executemany, queryset.update); chained and inserted in one go.

    `before` maps pk → previous values (updates); `after` maps pk → values to show instead of
    or beside the object's own; `fields` narrows both sides to those fields (e.g. only
    "position" when rows were renumbered); `name_of` spares a query per object when its
    `__str__` follows a relation. Returns the number of entries written.
    """
    if is_disabled():
        return 0
    ctx, now, entries = current(), timezone.now(), []
    for obj in objs:
        state = (
            raw_state(obj)
            if fields is None
            else {f: getattr(obj, obj._meta.get_field(f).attname) for f in fields}
        )
        if after is not None and obj.pk in after:
            state = {**state, **after[obj.pk]} if fields is None else {**after[obj.pk]}
        new = None if action == "delete" else redact(state)
        old = before.get(obj.pk) if before is not None else None
        if old is not None:
            old = redact({**state, **old} if fields is None else dict(old))
        entries.append(
            _build(
                action,
                ctx,
                now=now,
                object_type=object_type_of(obj),
                object_id=object_id_of(obj),
                name=(name_of or object_name_of)(obj),
                before=old if action != "create" else None,
                after=new,
                extra=extra,
            )
        )
    return len(_append(entries))
