"""API tokens: created through the API, the admin and the command; shown once; per user;
expiring after RAMPART_TOKEN_TTL_DAYS (at most RAMPART_TOKEN_MAX_TTL_DAYS); only for the
roles in RAMPART_TOKEN_ROLES."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken

from core.audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def _days(token: AuthToken) -> float:
    """The token's lifetime in days (its expiry is computed a moment before `created`)."""
    return round((token.expiry - token.created).total_seconds() / 86400, 2)


def _client_with(api_client_for, key: str):
    client = api_client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_user_creates_a_token_sees_the_key_once_and_uses_it(api, api_client_for):
    response = api.post(reverse("token-list"), {"expires_in_days": 30}, format="json")
    assert response.status_code == 201, response.data
    assert response["Cache-Control"] == "no-store"
    key = response.data["key"]
    assert response.data["expiry"] and key.startswith(response.data["token_key"])
    listed = api.get(reverse("token-list")).json()
    assert all("key" not in row for row in listed["results"])
    assert response.data["token_key"] in {row["token_key"] for row in listed["results"]}
    assert _client_with(api_client_for, key).get(reverse("me")).json()["username"] == "operator"


def test_a_token_without_a_lifetime_gets_the_default_one(api, settings):
    settings.RAMPART_TOKEN_TTL_DAYS = 90
    before = timezone.now()
    created = api.post(reverse("token-list"), {}, format="json")
    assert created.status_code == 201, created.data
    token = AuthToken.objects.get(token_key=created.data["token_key"])
    assert (
        timedelta(days=90) - timedelta(minutes=1)
        < token.expiry - before
        < timedelta(days=90, minutes=1)
    )
    listed = api.get(reverse("token-list")).json()["results"]
    shown = next(row for row in listed if row["token_key"] == token.token_key)
    assert shown["expiry"] and shown["expiry"].startswith(token.expiry.date().isoformat())


def test_the_default_lifetime_is_capped_by_the_maximum_and_zero_means_never(api, settings):
    settings.RAMPART_TOKEN_TTL_DAYS, settings.RAMPART_TOKEN_MAX_TTL_DAYS = 0, 0
    assert api.post(reverse("token-list"), {}, format="json").data["expiry"] is None
    settings.RAMPART_TOKEN_TTL_DAYS, settings.RAMPART_TOKEN_MAX_TTL_DAYS = 400, 30
    capped = AuthToken.objects.get(
        token_key=api.post(reverse("token-list"), {}, format="json").data["token_key"]
    )
    assert _days(capped) == 30


def test_a_lifetime_beyond_the_maximum_is_a_400_naming_the_setting(api, settings):
    settings.RAMPART_TOKEN_MAX_TTL_DAYS = 30
    count = AuthToken.objects.count()
    response = api.post(reverse("token-list"), {"expires_in_days": 31}, format="json")
    assert response.status_code == 400
    assert "RAMPART_TOKEN_MAX_TTL_DAYS" in str(response.data["expires_in_days"])
    assert AuthToken.objects.count() == count
    assert (
        api.post(reverse("token-list"), {"expires_in_days": 30}, format="json").status_code == 201
    )


def test_an_expired_token_is_refused_with_401(api, api_client_for):
    created = api.post(reverse("token-list"), {"expires_in_days": 1}, format="json").data
    client = _client_with(api_client_for, created["key"])
    assert client.get(reverse("me")).status_code == 200
    AuthToken.objects.filter(token_key=created["token_key"]).update(
        expiry=timezone.now() - timedelta(seconds=1)
    )
    assert client.get(reverse("me")).status_code == 401
    assert not AuthToken.objects.filter(token_key=created["token_key"]).exists()


def test_a_viewer_may_not_mint_a_token_unless_the_setting_lists_viewers(
    viewer_api, api, settings, users
):
    response = viewer_api.post(reverse("token-list"), {}, format="json")
    assert response.status_code == 403
    assert "RAMPART_TOKEN_ROLES" in str(response.data["detail"])
    with pytest.raises(CommandError, match="RAMPART_TOKEN_ROLES"):
        call_command("create_api_token", "viewer")
    assert AuthToken.objects.filter(user=users["viewer"]).count() == 1  # the fixture's own
    settings.RAMPART_TOKEN_ROLES = ["viewer", "admin"]
    assert viewer_api.post(reverse("token-list"), {}, format="json").status_code == 201
    assert api.post(reverse("token-list"), {}, format="json").status_code == 403  # operator


def test_viewers_still_list_and_revoke_their_own_tokens(viewer_api, users):
    mine = AuthToken.objects.filter(user=users["viewer"]).get()
    assert [r["token_key"] for r in viewer_api.get(reverse("token-list")).json()["results"]] == [
        mine.token_key
    ]
    url = reverse("token-detail", kwargs={"token_key": mine.token_key})
    assert viewer_api.delete(url).status_code == 204


def test_tokens_carry_no_key_into_the_audit_log(api):
    created = api.post(reverse("token-list"), {}, format="json").data
    entry = AuditEntry.objects.filter(action="token_create").order_by("-seq").first()
    dumped = str(entry.before) + str(entry.after) + str(entry.extra)
    assert created["key"] not in dumped and created["key"][8:] not in dumped


def test_tokens_are_private_to_their_user(api, viewer_api, users):
    _, _ = AuthToken.objects.create(user=users["viewer"])
    viewer_tokens = {t.token_key for t in AuthToken.objects.filter(user=users["viewer"])}
    listed = {row["token_key"] for row in api.get(reverse("token-list")).json()["results"]}
    assert not listed & viewer_tokens
    victim = next(iter(viewer_tokens))
    assert api.delete(reverse("token-detail", kwargs={"token_key": victim})).status_code == 404
    assert AuthToken.objects.filter(token_key=victim).exists()


def test_revoking_a_token_locks_it_out(users, api_client_for):
    token, key = AuthToken.objects.create(user=users["operator"])
    client = api_client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert (
        client.delete(reverse("token-detail", kwargs={"token_key": token.token_key})).status_code
        == 204
    )
    assert client.get(reverse("me")).status_code == 401


def test_expiry_is_bounded(api):
    response = api.post(reverse("token-list"), {"expires_in_days": 0}, format="json")
    assert response.status_code == 400 and "expires_in_days" in response.data


def test_me_lists_roles(api_client_for, users):
    data = api_client_for(users["approver"]).get(reverse("me")).json()
    assert data == {"username": "approver", "roles": ["approver"], "is_superuser": False}


def test_the_command_prints_a_working_token(users, capsys, api_client_for, settings):
    call_command("create_api_token", "operator", "--expires-days", "7")
    key = capsys.readouterr().out.strip()
    assert _client_with(api_client_for, key).get(reverse("me")).json()["roles"] == ["operator"]
    token = AuthToken.objects.get(user=users["operator"])
    assert key.startswith(token.token_key)
    assert _days(token) == 7
    settings.RAMPART_TOKEN_MAX_TTL_DAYS = 5
    with pytest.raises(CommandError, match="RAMPART_TOKEN_MAX_TTL_DAYS"):
        call_command("create_api_token", "operator", "--expires-days", "7")


@pytest.fixture
def admin_client_logged_in(client, make_user):
    superuser = make_user("root")
    superuser.is_staff = superuser.is_superuser = True
    superuser.save()
    client.force_login(superuser)
    return client


def test_an_admin_creates_a_token_for_a_user_and_sees_it_once(
    admin_client_logged_in, users, api_client_for
):
    url = reverse("admin:knox_authtoken_add")
    form = admin_client_logged_in.get(url, {"user": users["operator"].pk})
    assert form.status_code == 200
    response = admin_client_logged_in.post(
        url, {"user": users["operator"].pk, "expires_in_days": ""}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = AuthToken.objects.get(user=users["operator"])
    key = response.context["key"]
    assert key.encode() in response.content and key.startswith(token.token_key)
    client = api_client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(reverse("me")).json()["username"] == "operator"
    changelist = admin_client_logged_in.get(reverse("admin:knox_authtoken_changelist"))
    assert token.token_key.encode() in changelist.content and key.encode() not in changelist.content


def test_the_user_admin_action_leads_to_the_token_form(admin_client_logged_in, users):
    response = admin_client_logged_in.post(
        reverse("admin:auth_user_changelist"),
        {"action": "create_api_token", "_selected_action": [users["viewer"].pk]},
    )
    assert response.status_code == 302
    assert (
        response["Location"] == f"{reverse('admin:knox_authtoken_add')}?user={users['viewer'].pk}"
    )


def test_a_non_staff_user_cannot_open_the_token_admin(client, users):
    client.force_login(users["admin"])
    assert client.get(reverse("admin:knox_authtoken_add")).status_code == 302  # to the admin login


def test_the_token_admin_refuses_a_user_whose_roles_may_not_own_tokens(
    admin_client_logged_in, users
):
    response = admin_client_logged_in.post(
        reverse("admin:knox_authtoken_add"), {"user": users["viewer"].pk, "expires_in_days": ""}
    )
    assert response.status_code == 200 and "RAMPART_TOKEN_ROLES" in response.content.decode()
    assert not AuthToken.objects.filter(user=users["viewer"]).exists()
