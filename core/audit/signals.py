"""Signal receivers: every save and delete of an audited model, logins, and m2m role changes.

Bulk writes (bulk_create, bulk_update, queryset.update) send no signals; the services that
use them call `record_objects` themselves.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from typing import Any

from celery.signals import task_postrun, task_prerun
from django.apps import apps
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.management.base import BaseCommand
from django.db.models.deletion import Collector
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from .choices import AuditAction
from .context import AuditChannel, AuditContext, cli_actor, is_disabled, reset_context, set_context
from .services import (
    changed_fields,
    deferred,
    object_type_of,
    raw_state,
    record,
    redact,
)

AUDITED_APPS = {"rules", "agents", "accounts", "knox", "django_celery_beat"}
AUDITED_MODELS = {"auth.user", "auth.group"}
TOKEN_MODEL = "knox.authtoken"
_UID = "rampart-audit"


def is_audited(model) -> bool:
    label = model._meta.label_lower
    return not model._meta.auto_created and (
        model._meta.app_label in AUDITED_APPS or label in AUDITED_MODELS
    )


def _pre_save(sender, instance, raw=False, **kwargs) -> None:
    # Not `_state.adding`: a new instance with a preset key may still update an existing row.
    if raw or is_disabled() or instance.pk is None:
        instance._audit_before = None
        return
    old = sender._base_manager.filter(pk=instance.pk).first()
    instance._audit_before = raw_state(old) if old is not None else None


def _post_save(sender, instance, created: bool, raw=False, update_fields=None, **kwargs) -> None:
    if raw or is_disabled():
        return
    after_raw = raw_state(instance)
    before_raw = None if created else getattr(instance, "_audit_before", None)
    instance._audit_before = None
    if update_fields and before_raw is not None:
        # Only these columns were written: the rest of the row is what was there before.
        saved = {sender._meta.get_field(name).name for name in update_fields}
        after_raw = {k: (after_raw[k] if k in saved else v) for k, v in before_raw.items()}
    if object_type_of(sender) == TOKEN_MODEL:
        if created:
            record(AuditAction.TOKEN_CREATE, instance, after=redact(after_raw))
        return  # knox never edits a token except to refresh its expiry
    if before_raw is not None:
        changed = changed_fields(before_raw, after_raw)
        if not changed:
            return  # nothing but bookkeeping timestamps
        record(
            AuditAction.UPDATE,
            instance,
            before=redact(before_raw),
            after=redact(after_raw),
            changed=changed,
        )
        return
    record(AuditAction.CREATE, instance, after=redact(after_raw))


def _post_delete(sender, instance, **kwargs) -> None:
    if is_disabled():
        return
    action = (
        AuditAction.TOKEN_REVOKE if object_type_of(sender) == TOKEN_MODEL else AuditAction.DELETE
    )
    record(action, instance, before=redact(raw_state(instance)))


def _m2m_changed(sender, instance, action: str, reverse: bool, model, pk_set, **kwargs) -> None:
    """Group membership and permissions of users/groups: who may do what is audited too."""
    if is_disabled() or action not in (
        "pre_add",
        "pre_remove",
        "pre_clear",
        "post_add",
        "post_remove",
        "post_clear",
    ):
        return
    if reverse or not is_audited(type(instance)):
        return
    field = next(
        (f.name for f in type(instance)._meta.many_to_many if f.remote_field.through is sender),
        None,
    )
    if field is None:
        return
    if action.startswith("pre_"):
        instance._audit_m2m_before = sorted(
            map(str, getattr(instance, field).values_list("pk", flat=True))
        )
        return
    before = getattr(instance, "_audit_m2m_before", None)
    after = sorted(map(str, getattr(instance, field).values_list("pk", flat=True)))
    if before == after:
        return
    names = {
        str(o.pk): str(o) for o in model._base_manager.filter(pk__in=set(before or []) | set(after))
    }
    record(
        AuditAction.UPDATE,
        instance,
        before={field: [names.get(pk, pk) for pk in before or []]},
        after={field: [names.get(pk, pk) for pk in after]},
    )


def _logged_in(sender, request, user, **kwargs) -> None:
    if not is_disabled():
        record(AuditAction.LOGIN, user)


def _logged_out(sender, request, user, **kwargs) -> None:
    if not is_disabled() and user is not None:
        record(AuditAction.LOGOUT, user)


def _login_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    if is_disabled():
        return
    username = str(credentials.get("username") or credentials.get("email") or "")
    record(
        AuditAction.LOGIN_FAILED,
        object_type="auth.user",
        object_id="",
        name=username[:200],
        extra={"backend": getattr(sender, "__name__", str(sender))},
    )


# --- tasks and commands: who is the actor when there is no request ----------------------

_task_tokens: dict[str, Any] = {}


def _task_prerun(task_id=None, task=None, **kwargs) -> None:
    name = getattr(task, "name", "task")
    _task_tokens[task_id] = set_context(
        AuditContext(actor=f"system:{name}", channel=AuditChannel.SYSTEM, request_id=task_id or "")
    )


def _task_postrun(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        with contextlib.suppress(ValueError):  # reset from another context (gevent pools)
            reset_context(token)


def _wrap_management_commands() -> None:
    """Run every management command as `cli:<os user>` on the cli channel."""
    if getattr(BaseCommand.execute, "_rampart_audit", False):
        return
    original = BaseCommand.execute

    @functools.wraps(original)
    def execute(self, *args, **options):
        command = type(self).__module__.rsplit(".", 1)[-1]
        token = set_context(
            AuditContext(
                actor=cli_actor(),
                channel=AuditChannel.CLI,
                request_id=uuid.uuid4().hex,
                extra={"command": command},
            )
        )
        try:
            return original(self, *args, **options)
        finally:
            reset_context(token)

    execute._rampart_audit = True  # type: ignore[attr-defined]
    BaseCommand.execute = execute


def _defer_deletion_entries() -> None:
    """Django sends post_delete once per collected row; chain a whole delete's entries at once."""
    if getattr(Collector.delete, "_rampart_audit", False):
        return
    original = Collector.delete

    @functools.wraps(original)
    def delete(self):
        with deferred(using=self.using):
            return original(self)

    delete._rampart_audit = True  # type: ignore[attr-defined]
    Collector.delete = delete


def connect() -> None:
    for model in apps.get_models():
        if is_audited(model):
            uid = f"{_UID}:{model._meta.label_lower}"
            pre_save.connect(_pre_save, sender=model, dispatch_uid=uid)
            post_save.connect(_post_save, sender=model, dispatch_uid=uid)
            post_delete.connect(_post_delete, sender=model, dispatch_uid=uid)
    m2m_changed.connect(_m2m_changed, dispatch_uid=_UID)
    user_logged_in.connect(_logged_in, dispatch_uid=_UID)
    user_logged_out.connect(_logged_out, dispatch_uid=_UID)
    user_login_failed.connect(_login_failed, dispatch_uid=_UID)
    task_prerun.connect(_task_prerun, dispatch_uid=_UID, weak=False)
    task_postrun.connect(_task_postrun, dispatch_uid=_UID, weak=False)
    _wrap_management_commands()
    _defer_deletion_entries()
