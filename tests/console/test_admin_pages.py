"""Every model registered in the admin has a changelist (with search and filters) and an add
page that load for a superuser: a smoke test that the admin stays usable as models change."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

MODELS = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


@pytest.fixture
def superuser(make_user):
    user = make_user("root")
    user.is_staff = user.is_superuser = True
    user.save()
    return user


@pytest.fixture
def superuser_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("model, model_admin", MODELS, ids=[m._meta.label for m, _ in MODELS])
def test_changelist_search_and_add_pages_load(superuser_client, superuser, rf, model, model_admin):
    info = (model._meta.app_label, model._meta.model_name)
    changelist = reverse("admin:{}_{}_changelist".format(*info))
    assert superuser_client.get(changelist).status_code == 200
    if model_admin.search_fields:
        assert superuser_client.get(changelist, {"q": "x"}).status_code == 200
    request = rf.get("/")
    request.user = superuser
    if model_admin.has_add_permission(request):
        assert superuser_client.get(reverse("admin:{}_{}_add".format(*info))).status_code == 200
