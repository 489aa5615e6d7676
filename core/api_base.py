"""What every Rampart model viewset shares, written once (as NetBox's NetBoxModelViewSet).

- Permissions are explicit: a concrete viewset that names none (or the settings default,
  which refuses everything) is a programming error caught when the class is created.
- Writes go through services: serializers parse the shape and their create()/update() call
  a service; the viewset runs them in one transaction and deletes with a delete service.
- Errors keep one shape: services raise Django ValidationErrors, which console.api turns
  into field-keyed 400s; deleting an object still in use is a 409 naming its users.
- Every object has an ETag (a hash of its representation); a write carrying `If-Match`
  that no longer matches is a 412, so two clients editing one object cannot silently
  overwrite each other. A write without `If-Match` proceeds (last writer wins).

The platform knows no domain: which services save and delete, what wraps a write (the
policy domain adds revision capture) and which errors mean "in use" are attributes that a
domain's base classes set (rules.api.base).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Model
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from core.api import validation_detail
from rampart_contract.canonical import canonical_json


class Conflict(APIException):
    """409: the request is well-formed but the current state forbids it (e.g. object in use)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is still in use."
    default_code = "conflict"


class PreconditionFailed(APIException):
    """412: the request's If-Match names a version of the object that is no longer current."""

    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "If-Match does not match the object's current ETag."
    default_code = "precondition_failed"


class ErrorSerializer(serializers.Serializer):
    """The body of a 400/409 that is not about one field (documentation only)."""

    non_field_errors = serializers.ListField(child=serializers.CharField())


def has_explicit_permissions(view_class: type) -> bool:
    """True when a view names its own permission classes, or computes them per action."""
    classes = getattr(view_class, "permission_classes", None)
    overridden = any(
        "get_permissions" in vars(k)
        for k in view_class.__mro__
        if k.__module__.split(".")[0] not in ("rest_framework",)
    )
    return (
        overridden
        or bool(classes)
        and list(classes) != list(api_settings.DEFAULT_PERMISSION_CLASSES)
    )


def etag_of(data: object) -> str:
    """A strong ETag: the hash of the object's representation as the API renders it."""
    return '"' + hashlib.sha256(canonical_json(data, default=str)).hexdigest()[:32] + '"'


def if_match_allows(header: str | None, current: str) -> bool:
    """RFC 9110 If-Match: absent, `*` or a list naming the current (strong) tag."""
    if header is None:
        return True
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or current in tags


class ETagMixin:
    """GET of an object answers its ETag, and 304 to an If-None-Match naming it (a poller's
    cheap "changed since?"). For read-only objects; writable ones use ETagWriteMixin."""

    uses_etags = True  # core.api_schema documents the ETag (and If-Match/412 on writes)

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        instance = self.get_object()
        data = self.get_serializer(instance).data
        tag = etag_of(data)
        if tag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
        return Response(data, headers={"ETag": tag})


class ETagWriteMixin(ETagMixin):
    """PUT, PATCH and DELETE with an If-Match that does not name the current ETag answer 412
    and change nothing. The check and the write run in one transaction holding the object's
    row lock, so of two clients writing with the same ETag exactly one succeeds."""

    def current_etag(self, instance: Model) -> str:
        return etag_of(self.get_serializer(instance).data)

    def check_if_match(self, request: Request, instance: Model) -> None:
        current = self.current_etag(instance)
        if not if_match_allows(request.headers.get("If-Match"), current):
            raise PreconditionFailed(
                detail=f"If-Match does not match the current ETag {current}: the object "
                "changed since you read it; GET it again and retry with its new ETag."
            )

    def locked_object(self) -> Model:
        """The object, read after taking its row lock (call inside a transaction)."""
        instance = self.get_object()
        type(instance)._default_manager.select_for_update().filter(pk=instance.pk).exists()
        return self.get_object()

    def update(self, request: Request, *args, **kwargs) -> Response:
        partial = kwargs.pop("partial", False)
        with transaction.atomic():
            instance = self.locked_object()
            self.check_if_match(request, instance)
            serializer = self.get_serializer(instance, data=request.data, partial=partial)
            serializer.is_valid(raise_exception=True)
            self.perform_update(serializer)
        return Response(serializer.data, headers={"ETag": etag_of(serializer.data)})

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        with transaction.atomic():
            instance = self.locked_object()
            self.check_if_match(request, instance)
            self.perform_destroy(instance)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServiceModelViewSet(ETagWriteMixin, viewsets.ModelViewSet):
    """A model viewset whose writes go through services.

    A domain's base class sets `delete_service`, and may set `write_scope` (what wraps a
    create or update: a transaction by default) and `conflict_errors` (service errors that
    mean "still in use", answered 409). Concrete viewsets set `queryset`,
    `serializer_class`, `filterset_class`, `permission_classes`; a base class that is not a
    view itself sets `abstract = True`.
    """

    abstract = True
    delete_service: Callable[[Model], None] | None = None
    write_scope: Callable[[], AbstractContextManager] = staticmethod(transaction.atomic)
    conflict_errors: tuple[type[Exception], ...] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if not vars(cls).get("abstract", False) and not has_explicit_permissions(cls):
            raise ImproperlyConfigured(f"{cls.__qualname__} must set permission_classes explicitly")

    def _refetch(self, serializer: serializers.BaseSerializer) -> None:
        """Answer with the object as stored (services replace link rows behind prefetch caches)."""
        serializer.instance = self.get_queryset().get(pk=serializer.instance.pk)

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        with type(self).write_scope():
            serializer.save()
        self._refetch(serializer)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        with type(self).write_scope():
            serializer.save()
        self._refetch(serializer)

    def perform_destroy(self, instance: Model) -> None:
        delete = type(self).delete_service
        if delete is None:
            raise ImproperlyConfigured(f"{type(self).__qualname__} must set delete_service")
        try:
            delete(instance)
        except self.conflict_errors as exc:
            raise Conflict(detail=validation_detail(exc)) from None

    @extend_schema(responses={204: None, 409: ErrorSerializer})
    def destroy(self, request, *args, **kwargs):
        """Delete; refused with 409 (naming the users) while anything still refers to it."""
        return super().destroy(request, *args, **kwargs)


class NameListField(serializers.ListField):
    """An ordered list of names (or address literals), read through `read(instance)`.

    References travel by name, as in the policy document; the services resolve them.
    """

    def __init__(self, read: Callable[[Model], list[str]], **kwargs) -> None:
        self.read = read
        kwargs.setdefault("child", serializers.CharField())
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def get_attribute(self, instance: Model) -> list[str]:
        return self.read(instance)

    def to_representation(self, data: list[str]) -> list[str]:
        return list(data)

    def to_internal_value(self, data) -> list[str]:
        """Plain non-blank strings in one pass (stripped, as the child CharField would); a
        child field run per item costs ~15 µs: 1.5 s for a 100,000-member group. Anything
        else goes through the child, which words the error per item."""
        if isinstance(data, list) and all(type(item) is str for item in data):
            stripped = [item.strip() for item in data]
            if all(stripped) and (self.allow_empty or stripped):
                joined = "".join(stripped)
                try:
                    joined.encode()  # surrogates do not encode
                except UnicodeEncodeError:
                    pass
                else:
                    if (
                        "\x00" not in joined
                        and (self.max_length is None or len(stripped) <= self.max_length)
                        and (self.min_length is None or len(stripped) >= self.min_length)
                    ):
                        return stripped
        return super().to_internal_value(data)


class ServiceModelSerializer(serializers.ModelSerializer):
    """Parses the shape; the model (full_clean in the save service) validates the values.

    Validators DRF would copy from the model (unique name, name syntax) are dropped so each
    rule is checked, and worded, in one place. A domain's base class sets `save_service`
    (validate and save one object). Reference lists named in `ref_fields` are popped before
    saving and handed to `save_refs`, which calls the service that sets them.
    """

    ref_fields: tuple[str, ...] = ()
    save_service: Callable[[Model], Model] | None = None

    def build_standard_field(self, field_name, model_field):
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        kwargs.pop("validators", None)
        return field_class, kwargs

    def get_validators(self) -> list:
        return []

    def save_refs(self, obj: Model, refs: dict) -> None:
        """Set reference lists through their service (override when `ref_fields` is set)."""

    def _save(self, obj: Model) -> Model:
        save = type(self).save_service
        if save is None:
            raise ImproperlyConfigured(f"{type(self).__qualname__} must set save_service")
        return save(obj)

    def create(self, validated_data: dict) -> Model:
        refs = {
            name: validated_data.pop(name) for name in self.ref_fields if name in validated_data
        }
        obj = self._save(self.Meta.model(**validated_data))
        self.save_refs(obj, refs)
        return obj

    def update(self, instance: Model, validated_data: dict) -> Model:
        refs = {
            name: validated_data.pop(name) for name in self.ref_fields if name in validated_data
        }
        for name, value in validated_data.items():
            setattr(instance, name, value)
        self._save(instance)
        self.save_refs(instance, refs)
        return instance
