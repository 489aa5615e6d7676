"""The dashboard's users page: admin role only; create, change roles, deactivate; the same
guards and audit entries as the API, and the reason/ticket every dashboard write carries."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.urls import reverse

from core.audit.models import AuditEntry

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def admin_client(client, users):
    client.force_login(users["admin"])  # the admin role, not a superuser
    return client


def _flash(response) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


@pytest.mark.parametrize("role", ["viewer", "operator", "approver"])
def test_only_admins_reach_the_page(client, users, role):
    client.force_login(users[role])
    assert client.get(reverse("dashboard:users")).status_code == 403
    target = users["viewer"].pk
    post = client.post(reverse("dashboard:user-active", args=[target]), {"active": "0"})
    assert post.status_code == 403
    assert 'href="/users/"' not in client.get(reverse("dashboard:overview")).content.decode()
    assert User.objects.get(pk=target).is_active


def test_the_list_shows_roles_last_login_and_state(admin_client, users):
    User.objects.filter(pk=users["viewer"].pk).update(is_active=False)
    page = admin_client.get(reverse("dashboard:users")).content.decode()
    assert 'href="/users/"' in page  # the nav link
    row = page[page.index('data-username="viewer"') :]
    row = row[: row.index("</tr>")]
    assert "deactivated" in row and "never" in row
    assert 'value="viewer" id="role-' in row and "checked" in row
    me = page[page.index('data-username="admin"') :]
    assert "Deactivate" not in me[: me.index("</tr>")]  # no button to lock oneself out


def test_creating_a_user_shows_a_generated_password_once(admin_client):
    response = admin_client.post(
        reverse("dashboard:users"),
        {"username": "erin", "roles": ["operator"], "password": "", "reason": "new hire"},
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    page = response.content.decode()
    marker = 'data-testid="generated-password">'
    password = page[page.index(marker) + len(marker) :].split("<", 1)[0]
    assert len(password) >= 20
    user = User.objects.get(username="erin")
    assert user.check_password(password) and list(user.groups.values_list("name", flat=True)) == [
        "operator"
    ]
    entry = AuditEntry.objects.get(action="user_create")
    assert (entry.reason, entry.channel, entry.actor) == ("new hire", "ui", "admin")
    entries = json.dumps(list(AuditEntry.objects.values("before", "after", "extra")))
    assert password not in entries and user.password not in entries
    assert password not in admin_client.get(reverse("dashboard:users")).content.decode()


def test_a_bad_create_shows_the_field_errors(admin_client, users):
    response = admin_client.post(
        reverse("dashboard:users"), {"username": "operator", "password": "abc"}
    )
    page = response.content.decode()
    assert response.status_code == 200 and "a user named" in page
    assert not AuditEntry.objects.filter(action="user_create").exists()


def test_changing_roles_and_deactivating(admin_client, users):
    target = users["operator"]
    response = admin_client.post(
        reverse("dashboard:user-roles", args=[target.pk]), {"roles": ["viewer"]}
    )
    assert response.status_code == 302 and "now holds viewer" in _flash(response)
    assert list(target.groups.values_list("name", flat=True)) == ["viewer"]
    response = admin_client.post(
        reverse("dashboard:user-active", args=[target.pk]), {"active": "0"}
    )
    assert "deactivated" in _flash(response)
    target.refresh_from_db()
    assert not target.is_active
    assert [
        e.action for e in AuditEntry.objects.filter(action__startswith="user_").order_by("seq")
    ] == [
        "user_roles",
        "user_deactivate",
    ]
    admin_client.post(reverse("dashboard:user-active", args=[target.pk]), {"active": "1"})
    target.refresh_from_db()
    assert target.is_active


def test_the_guards_show_their_reason(admin_client, users, make_user):
    make_user("second-admin", "admin")
    me = users["admin"]
    response = admin_client.post(reverse("dashboard:user-roles", args=[me.pk]), {"roles": []})
    assert "your own admin role" in _flash(response)
    response = admin_client.post(reverse("dashboard:user-active", args=[me.pk]), {"active": "0"})
    assert "deactivate yourself" in _flash(response)
    me.refresh_from_db()
    assert me.is_active and me.groups.filter(name="admin").exists()


def test_a_required_reason_is_asked_on_every_users_form(admin_client, users, settings):
    settings.RAMPART = {**settings.RAMPART, "AUDIT_REQUIRE_REASON": True}
    target = users["viewer"]
    page = admin_client.post(reverse("dashboard:users"), {"username": "fay", "roles": ["viewer"]})
    assert "a reason is required" in page.content.decode()
    refused = admin_client.post(reverse("dashboard:user-active", args=[target.pk]), {"active": "0"})
    assert "a reason is required" in _flash(refused)
    assert not User.objects.filter(username="fay").exists()
    target.refresh_from_db()
    assert target.is_active
    admin_client.post(
        reverse("dashboard:user-active", args=[target.pk]),
        {"active": "0", "reason": "left", "ticket": "HR-7"},
    )
    entry = AuditEntry.objects.get(action="user_deactivate")
    assert (entry.reason, entry.ticket) == ("left", "HR-7")
