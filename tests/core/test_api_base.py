"""The platform's API base knows no domain: a domain sets its services, or it is refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.settings import api_settings

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


def test_the_api_parses_json_bodies_only():
    """Form and multipart bodies read a left-out boolean as false: the API refuses them."""
    assert [JSONParser] == api_settings.DEFAULT_PARSER_CLASSES


@pytest.mark.django_db
def test_a_form_body_is_415_and_the_browsable_api_keeps_its_json_form(api):
    form = {"name": "a", "value": "198.18.0.1"}
    response = api.post("/api/v1/addresses/", form, format="multipart")
    assert response.status_code == 415
    assert "Unsupported media type" in str(response.data["detail"])
    page = api.get("/api/v1/addresses/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_content"' in html and "application/json" in html  # the raw-data form
