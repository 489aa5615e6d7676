"""Shared fixtures: a user per role, API clients authenticated by session or token."""

from __future__ import annotations

import uuid

import pytest

ROLES = ("viewer", "operator", "approver", "admin")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory) -> None:
    """A file-backed SQLite test database, so the processes some tests start (Celery
    workers, gunicorn) can open it; SQLite's default in-memory test database is private."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("testdb") / "test.sqlite3")


@pytest.fixture(autouse=True)
def fast_password_hasher(request) -> None:
    """Test users' passwords protect nothing; PBKDF2 costs seconds per test on 2 cores.

    Only in-process (a server subprocess keeps the real hashers; it sees tokens, not logins).
    """
    if not request.config.pluginmanager.hasplugin("django"):
        return  # pure tests run with -p no:django
    settings = request.getfixturevalue("settings")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def audit_checkpoints_apart(request, tmp_path_factory) -> None:
    """Each test's audit checkpoints in a directory of its own (made when first written):
    a checkpoint in the shared var/ would make every later test's chain look truncated."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    settings = request.getfixturevalue("settings")
    directory = tmp_path_factory.getbasetemp() / "audit-checkpoints" / uuid.uuid4().hex
    settings.RAMPART = {**settings.RAMPART, "AUDIT_CHECKPOINT_DIR": str(directory)}


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    def make(username: str, role: str | None = None, password: str = "pw-Rampart-123"):
        user = get_user_model().objects.create_user(username=username, password=password)
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def users(make_user) -> dict:
    """One user per role, named after it."""
    return {role: make_user(role, role) for role in ROLES}


@pytest.fixture
def api_client_for():
    """An APIClient authenticated as `user` with a real knox token (as CI would)."""
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            _, key = AuthToken.objects.create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client

    return make


@pytest.fixture
def api(api_client_for, users):
    """An operator's API client (can edit and deploy)."""
    return api_client_for(users["operator"])


@pytest.fixture
def viewer_api(api_client_for, users):
    return api_client_for(users["viewer"])
