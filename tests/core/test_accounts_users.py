"""/api/v1/users/: user and role management by the `admin` role (not only the superuser),
audited without secrets, with the guards that keep the console administrable."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken

from core.accounts import services
from core.accounts.errors import LastAdmin
from core.audit.models import AuditEntry

pytestmark = pytest.mark.django_db

User = get_user_model()
PASSWORD = "Initial-pw-4711"


@pytest.fixture
def admin_api(api_client_for, users):
    """The `admin` role's client: a plain user in the admin group, not a superuser."""
    assert not users["admin"].is_superuser
    return api_client_for(users["admin"])


def _detail(name: str, **kwargs) -> str:
    return reverse(f"user-{name}", kwargs=kwargs)


def _create(admin_api, **body):
    body = {"username": "dana", "roles": ["operator"], **body}
    return admin_api.post(reverse("user-list"), body, format="json")


def _can_log_in(username: str, password: str) -> bool:
    return Client().login(username=username, password=password)


def _audit_text() -> str:
    """Every audit entry's data as one string, to look for secrets in."""
    return json.dumps(
        list(AuditEntry.objects.values("before", "after", "extra", "changed", "object_name"))
    )


def test_an_admin_creates_a_user_with_a_role_and_a_password(admin_api):
    response = _create(admin_api, password=PASSWORD, email="dana@example.org")
    assert response.status_code == 201, response.data
    assert response.data["password"] is None  # given, so never echoed
    assert response.data["roles"] == ["operator"] and response.data["is_active"]
    user = User.objects.get(username="dana")
    assert _can_log_in("dana", PASSWORD)
    entry = AuditEntry.objects.get(action="user_create")
    assert entry.object_name == "dana" and entry.after["roles"] == ["operator"]
    assert entry.after["password"] == "[redacted]" and entry.extra["password"] == "given"
    text = _audit_text()
    assert PASSWORD not in text and user.password not in text


def test_an_invite_password_is_generated_and_shown_once(admin_api):
    response = _create(admin_api)
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    generated = response.data["password"]
    assert len(generated) >= 20 and _can_log_in("dana", generated)
    detail = admin_api.get(_detail("detail", pk=response.data["id"])).json()
    assert "password" not in detail
    assert generated not in _audit_text()
    assert AuditEntry.objects.get(action="user_create").extra["password"] == "generated"


def test_no_answer_carries_a_password_or_its_hash(admin_api, users):
    listed = admin_api.get(reverse("user-list")).json()["results"]
    assert {row["username"] for row in listed} >= set(users)
    hashes = [u.password for u in User.objects.all()]
    body = json.dumps(listed)
    assert all(h not in body for h in hashes)
    assert all("password" not in row for row in listed)


@pytest.mark.parametrize("role", ["viewer", "operator", "approver"])
def test_other_roles_get_403_everywhere(role, users, api_client_for):
    client = api_client_for(users[role])
    target = users["viewer"].pk
    assert client.get(reverse("user-list")).status_code == 403
    assert client.get(_detail("detail", pk=target)).status_code == 403
    assert client.get(reverse("user-tokens", args=[target])).status_code == 403
    assert _create(client, password=PASSWORD).status_code == 403
    for name, body in (
        ("roles", {"roles": ["admin"]}),
        ("deactivate", {}),
        ("reactivate", {}),
        ("reset-password", {"password": PASSWORD}),
    ):
        assert client.post(_detail(name, pk=target), body, format="json").status_code == 403
    assert not User.objects.filter(username="dana").exists()
    assert list(users["viewer"].groups.values_list("name", flat=True)) == ["viewer"]


def test_changing_roles_is_audited_with_the_reason(admin_api, users):
    target = users["operator"]
    response = admin_api.post(
        _detail("roles", pk=target.pk),
        {"roles": ["viewer", "approver"]},
        format="json",
        HTTP_X_RAMPART_REASON="moved to the review team",
    )
    assert response.status_code == 200, response.data
    assert response.data["roles"] == ["approver", "viewer"]
    entry = AuditEntry.objects.get(action="user_roles")
    assert (entry.before, entry.after) == (
        {"roles": ["operator"]},
        {"roles": ["approver", "viewer"]},
    )
    assert entry.reason == "moved to the review team" and entry.actor == "admin"
    bad = admin_api.post(_detail("roles", pk=target.pk), {"roles": ["root"]}, format="json")
    assert bad.status_code == 400 and "roles" in bad.data


def test_an_admin_cannot_remove_their_own_admin_role_or_deactivate_themselves(
    admin_api, users, make_user
):
    make_user("second-admin", "admin")  # not the last admin: the refusal is about oneself
    me = users["admin"].pk
    response = admin_api.post(_detail("roles", pk=me), {"roles": ["operator"]}, format="json")
    assert response.status_code == 409
    assert "your own admin role" in str(response.data["non_field_errors"])
    response = admin_api.post(_detail("deactivate", pk=me), {}, format="json")
    assert response.status_code == 409 and "deactivate yourself" in str(response.data)
    users["admin"].refresh_from_db()
    assert users["admin"].is_active and users["admin"].groups.filter(name="admin").exists()
    assert not AuditEntry.objects.filter(action__in=["user_roles", "user_deactivate"]).exists()
    # Adding roles beside admin is no demotion.
    ok = admin_api.post(_detail("roles", pk=me), {"roles": ["admin", "operator"]}, format="json")
    assert ok.status_code == 200


def test_the_last_active_admin_is_never_demoted_nor_deactivated(users, make_user):
    """Two admins demoting each other at once: the first wins, the second (whose request
    passed the role check before the first committed) is refused under the row locks."""
    first, second = users["admin"], make_user("second-admin", "admin")
    retired = make_user("retired-admin", "admin")
    User.objects.filter(pk=retired.pk).update(is_active=False)  # an inactive admin counts not
    services.user_set_roles(actor=first, user=second, role_names=["operator"])
    with pytest.raises(LastAdmin, match="last active admin"):
        services.user_set_roles(actor=second, user=first, role_names=["viewer"])
    with pytest.raises(LastAdmin):
        services.user_deactivate(actor=second, user=first)
    first.refresh_from_db()
    assert first.is_active and first.groups.filter(name="admin").exists()


def test_a_demoted_admin_is_refused_at_once(api_client_for, users, make_user):
    """Roles are read per request: a demoted admin's next call is a 403 before any guard."""
    other = make_user("second-admin", "admin")
    client = api_client_for(other)
    first = users["admin"]
    services.user_set_roles(actor=first, user=other, role_names=["viewer"])
    response = client.post(_detail("roles", pk=first.pk), {"roles": ["viewer"]}, format="json")
    assert response.status_code == 403


def test_deactivating_locks_the_user_out_and_revokes_their_tokens(admin_api, users, api_client_for):
    target = users["operator"]
    token_client = api_client_for(target)
    assert token_client.get(reverse("me")).status_code == 200
    assert _can_log_in("operator", "pw-Rampart-123")
    response = admin_api.post(_detail("deactivate", pk=target.pk), {}, format="json")
    assert response.status_code == 200 and response.data["is_active"] is False
    assert not _can_log_in("operator", "pw-Rampart-123")
    assert token_client.get(reverse("me")).status_code == 401
    assert not AuthToken.objects.filter(user=target).exists()
    entry = AuditEntry.objects.get(action="user_deactivate")
    assert entry.extra == {"tokens_revoked": 1} and entry.after == {"is_active": False}
    assert AuditEntry.objects.filter(action="token_revoke", user_id=users["admin"].pk).exists()
    response = admin_api.post(_detail("reactivate", pk=target.pk), {}, format="json")
    assert response.status_code == 200 and response.data["is_active"] is True
    assert _can_log_in("operator", "pw-Rampart-123")
    assert AuditEntry.objects.filter(action="user_reactivate").count() == 1
    inactive = admin_api.get(reverse("user-list"), {"is_active": "false"}).json()
    assert inactive["count"] == 0


def test_resetting_a_password(admin_api, users):
    target = users["viewer"]
    given = admin_api.post(
        _detail("reset-password", pk=target.pk), {"password": "Brand-new-pw-99"}, format="json"
    )
    assert given.status_code == 200 and given.data == {"password": None}
    assert _can_log_in("viewer", "Brand-new-pw-99") and not _can_log_in("viewer", "pw-Rampart-123")
    weak = admin_api.post(
        _detail("reset-password", pk=target.pk), {"password": "abc"}, format="json"
    )
    assert weak.status_code == 400 and "password" in weak.data
    generated = admin_api.post(_detail("reset-password", pk=target.pk), {}, format="json")
    assert generated["Cache-Control"] == "no-store"
    new = generated.data["password"]
    assert _can_log_in("viewer", new)
    text = _audit_text()
    target.refresh_from_db()
    assert "Brand-new-pw-99" not in text and new not in text and target.password not in text
    entries = AuditEntry.objects.filter(action="password_reset").order_by("seq")
    assert [e.extra["password"] for e in entries] == ["given", "generated"]


def test_a_superusers_account_is_changed_only_by_a_superuser(admin_api, make_user):
    root = make_user("root")
    root.is_superuser = root.is_staff = True
    root.save()
    for name, body in (("reset-password", {}), ("deactivate", {}), ("roles", {"roles": []})):
        response = admin_api.post(_detail(name, pk=root.pk), body, format="json")
        assert response.status_code == 403 and "superuser" in str(response.data["detail"])
    root.refresh_from_db()
    assert root.is_active and root.check_password("pw-Rampart-123")


def test_an_admin_lists_and_revokes_anyones_tokens(admin_api, users, api_client_for):
    victim_client = api_client_for(users["approver"])
    token = AuthToken.objects.get(user=users["approver"])
    listed = admin_api.get(reverse("user-tokens", args=[users["approver"].pk])).json()
    assert listed == [
        {
            "token_key": token.token_key,
            "created": listed[0]["created"],
            "expiry": listed[0]["expiry"],
            "username": "approver",
        }
    ]
    assert listed[0]["expiry"] is not None  # the default lifetime applies to every token
    url = reverse("user-token-detail", args=[users["approver"].pk, token.token_key])
    assert admin_api.delete(url).status_code == 204
    assert victim_client.get(reverse("me")).status_code == 401
    entry = AuditEntry.objects.get(action="token_revoke", object_id=token.token_key[:8])
    assert entry.actor == "admin"
    # A token is revoked under its own user's URL only.
    other = AuthToken.objects.create(user=users["viewer"])[0]
    wrong = reverse("user-token-detail", args=[users["approver"].pk, other.token_key])
    assert admin_api.delete(wrong).status_code == 404


def test_filters_and_unknown_parameters(admin_api, users):
    admins = admin_api.get(reverse("user-list"), {"role": "admin"}).json()["results"]
    assert [u["username"] for u in admins] == ["admin"]
    assert admin_api.get(reverse("user-list"), {"rol": "admin"}).status_code == 400


def test_a_duplicate_username_is_a_400(admin_api, users):
    response = _create(admin_api, username="Operator", password=PASSWORD)
    assert response.status_code == 400 and "username" in response.data
