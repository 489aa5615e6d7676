"""API tokens: created through the API, the admin and the command; shown once; per user."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse
from knox.models import AuthToken

pytestmark = pytest.mark.django_db


def test_a_user_creates_a_token_sees_the_key_once_and_uses_it(viewer_api, api_client_for):
    response = viewer_api.post(reverse("token-list"), {"expires_in_days": 30}, format="json")
    assert response.status_code == 201, response.data
    key = response.data["key"]
    assert response.data["expiry"] and key.startswith(response.data["token_key"])
    listed = viewer_api.get(reverse("token-list")).json()
    assert all("key" not in row for row in listed["results"])
    client = api_client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(reverse("me")).json()["username"] == "viewer"


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


def test_expiry_is_bounded(viewer_api):
    response = viewer_api.post(reverse("token-list"), {"expires_in_days": 0}, format="json")
    assert response.status_code == 400 and "expires_in_days" in response.data


def test_me_lists_roles(api_client_for, users):
    data = api_client_for(users["approver"]).get(reverse("me")).json()
    assert data == {"username": "approver", "roles": ["approver"], "is_superuser": False}


def test_the_command_prints_a_working_token(users, capsys, api_client_for):
    call_command("create_api_token", "operator", "--expires-days", "7")
    key = capsys.readouterr().out.strip()
    client = api_client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(reverse("me")).json()["roles"] == ["operator"]


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
