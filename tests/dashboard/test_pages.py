"""Signing in and out, and every main page rendering for an operator."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rules.models import (
    Device,
)

from .helpers import small_policy

pytestmark = pytest.mark.django_db


def test_login_and_logout(client, users):
    response = client.post(reverse("login"), {"username": "viewer", "password": "pw-Rampart-123"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    client.post(reverse("logout"))
    assert client.get("/").status_code == 302
    bad = client.post(reverse("login"), {"username": "viewer", "password": "wrong"})
    assert "Wrong username or password" in bad.content.decode()


def test_main_pages_render(operator_client):
    ruleset = small_policy()
    Device.objects.create(
        name="edge-1",
        address="198.18.0.2",
        status="offline",
        drifted=True,
        drift_diff="-A INPUT -j ACCEPT\n+A INPUT -j DROP",
        facts={"kernel": "6.1"},
    )
    device = Device.objects.get(name="edge-1")
    pages = {
        reverse("dashboard:overview"): ["edge-1", "devices-offline"],
        reverse("dashboard:devices"): ["edge-1", "drifted"],
        reverse("dashboard:device", args=[device.pk]): ["kernel", "diff-add"],
        reverse("dashboard:rulesets"): ["web"],
        reverse("dashboard:ruleset", args=[ruleset.pk]): ["office to web", "block lab"],
        reverse("dashboard:objects", args=["addresses"]): ["198.18.0.0/24"],
        reverse("dashboard:objects", args=["service-groups"]): ["https"],
    }
    for url, needles in pages.items():
        page = operator_client.get(url).content.decode()
        for needle in needles:
            assert needle in page, (url, needle)
