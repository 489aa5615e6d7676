"""The platform's API base knows no domain: a domain sets its services, or it is refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from rest_framework.permissions import AllowAny

from core.api_base import Conflict, ServiceModelSerializer, ServiceModelViewSet
from core.audit.models import AuditEntry


def test_a_concrete_viewset_must_name_its_permissions():
    with pytest.raises(ImproperlyConfigured, match="permission_classes"):

        class Unguarded(ServiceModelViewSet):
            queryset = AuditEntry.objects.all()


def test_an_abstract_base_needs_no_permissions():
    class DomainBase(ServiceModelViewSet):
        abstract = True

    with pytest.raises(ImproperlyConfigured):

        class Concrete(DomainBase):
            queryset = AuditEntry.objects.all()


def test_deleting_without_a_delete_service_is_refused():
    class NoDelete(ServiceModelViewSet):
        queryset = AuditEntry.objects.all()
        permission_classes = [AllowAny]

    with pytest.raises(ImproperlyConfigured, match="delete_service"):
        NoDelete().perform_destroy(AuditEntry())


def test_saving_without_a_save_service_is_refused():
    class NoSave(ServiceModelSerializer):
        class Meta:
            model = AuditEntry
            fields = ["reason"]

    with pytest.raises(ImproperlyConfigured, match="save_service"):
        NoSave().create({"reason": "x"})


def test_a_conflict_error_of_the_domain_becomes_a_409():
    class InUse(ValidationError):
        pass

    def refuse(obj):
        raise InUse({"name": ["in use"]})

    class Guarded(ServiceModelViewSet):
        queryset = AuditEntry.objects.all()
        permission_classes = [AllowAny]
        delete_service = staticmethod(refuse)
        conflict_errors = (InUse,)

    with pytest.raises(Conflict) as caught:
        Guarded().perform_destroy(AuditEntry())
    assert caught.value.detail == {"name": ["in use"]}
