"""Enrollment, console side: one-time hashed tokens, the command, the API, the enroll endpoint."""

from __future__ import annotations

import io
import os
import stat
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from agents import client as console_client
from agents import selectors, services
from agents.client import console_private_key, console_public_key_b64
from agents.models import EnrollmentToken
from rampart_agent import protocol
from rules.models import Device
from tests.support.deploy import make_device

pytestmark = pytest.mark.django_db


ENROLL = "/api/v1/agents/enroll/"


@pytest.fixture(autouse=True)
def console_key(settings, tmp_path):
    settings.RAMPART = {
        **settings.RAMPART,
        "CONSOLE_KEY_FILE": str(tmp_path / "keys" / "console-key.pem"),
    }
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"enroll-{tmp_path.name}",
        }
    }


def agent_payload(token: str, **overrides) -> dict:
    key = protocol.generate_private_key()
    cert = protocol.make_self_signed_cert(key, "web-1")
    return {
        "token": token,
        "public_key": protocol.public_key_b64(key),
        "cert_fingerprint": protocol.cert_fingerprint(cert),
        "listen_port": 9745,
        "facts": {"hostname": "web-1", "kernel": "6.1", "backend": "nft"},
        **overrides,
    }


def test_token_is_hashed_one_time_and_expiring():
    device = make_device("web-1")
    issued = services.enrollment_token_create(device=device, ttl=600)
    record = EnrollmentToken.objects.get()
    assert issued.token not in (record.digest, record.prefix) and len(record.digest) == 64
    assert issued.token.startswith("rpt-enroll-") and issued.token[11:19] == record.prefix
    assert selectors.enrollment_token_lookup(issued.token) == record
    assert selectors.enrollment_token_lookup(issued.token + "x") is None
    EnrollmentToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert selectors.enrollment_token_lookup(issued.token) is None


def test_command_prints_a_usable_token():
    device = make_device("web-1")
    out, err = io.StringIO(), io.StringIO()
    call_command("enrollment_token", "web-1", stdout=out, stderr=err)
    token = out.getvalue().strip()
    assert selectors.enrollment_token_lookup(token).device == device
    assert "web-1" in err.getvalue() and token not in err.getvalue()


def test_api_token_creation_needs_edit_role(api, viewer_api):
    device = make_device("web-1")
    url = f"/api/v1/devices/{device.pk}/enrollment-token/"
    assert viewer_api.post(url, {}, format="json").status_code == 403
    resp = api.post(url, {"ttl": 120}, format="json")
    assert resp.status_code == 201, resp.content
    assert resp.json()["device"] == "web-1" and selectors.enrollment_token_lookup(
        resp.json()["token"]
    )
    assert resp["Cache-Control"] == "no-store"  # the clear text must not sit in any cache
    assert api.post("/api/v1/devices/99999/enrollment-token/", {}, format="json").status_code == 404


def test_enroll_stores_key_pin_facts_and_returns_console_key(client):
    device = make_device("web-1")
    token = services.enrollment_token_create(device=device).token
    payload = agent_payload(token)
    resp = client.post(ENROLL, payload, content_type="application/json")
    assert resp.status_code == 201, resp.content
    assert resp.json() == {
        "device": "web-1",
        "device_id": device.pk,
        "console_public_key": console_public_key_b64(),
    }
    device.refresh_from_db()
    assert device.agent_public_key == payload["public_key"]
    assert device.agent_cert_fingerprint == payload["cert_fingerprint"]
    assert device.agent_port == 9745 and device.facts["backend"] == "nft" and device.enrolled_at
    # one time only
    again = client.post(ENROLL, agent_payload(token), content_type="application/json")
    assert again.status_code == 403
    assert Device.objects.get(pk=device.pk).agent_public_key == payload["public_key"]


@pytest.mark.parametrize("bad", [{"token": "rpt-enroll-nope"}, {"token": ""}, {}])
def test_enroll_refuses_unknown_tokens(client, bad):
    make_device("web-1")
    payload = {k: v for k, v in agent_payload("x").items() if k != "token"} | bad
    assert client.post(ENROLL, payload, content_type="application/json").status_code == 403


def test_enroll_refuses_expired_token(client):
    device = make_device("web-1")
    token = services.enrollment_token_create(device=device).token
    EnrollmentToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert (
        client.post(ENROLL, agent_payload(token), content_type="application/json").status_code
        == 403
    )


@pytest.mark.parametrize(
    "field,value",
    [("public_key", "not-base64!"), ("cert_fingerprint", "12:34"), ("listen_port", 70000)],
)
def test_enroll_validates_and_keeps_token_on_bad_input(client, field, value):
    device = make_device("web-1")
    token = services.enrollment_token_create(device=device).token
    resp = client.post(
        ENROLL, agent_payload(token, **{field: value}), content_type="application/json"
    )
    assert resp.status_code == 400 and field in resp.json()
    assert selectors.enrollment_token_lookup(token) is not None  # not spent by a typo


def test_enroll_is_throttled(client, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "enroll": "3/minute",
        },
    }
    ScopedRateThrottle.THROTTLE_RATES = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    try:
        codes = [
            client.post(
                ENROLL, {"token": "rpt-enroll-guess"}, content_type="application/json"
            ).status_code
            for _ in range(5)
        ]
    finally:
        ScopedRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    assert codes[:3] == [403] * 3 and codes[3:] == [429, 429]


def test_console_key_made_once_with_mode_0600(tmp_path, settings):
    path = tmp_path / "keys" / "console-key.pem"
    assert not path.exists()
    key = console_private_key()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    console_client._key_cache.clear()
    assert protocol.public_key_b64(console_private_key()) == protocol.public_key_b64(key)
    assert path.read_bytes() == pem


def test_a_temporary_console_key_left_by_a_killed_process_is_replaced(tmp_path):
    """A process killed while making the key leaves `.console-key.pem.<pid>.tmp`; a later
    process with the same pid (containers reuse small pids) must still make the key."""
    path = tmp_path / "keys" / "console-key.pem"
    path.parent.mkdir()
    stale = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    stale.write_bytes(b"half a key")
    key = console_private_key()
    assert protocol.public_key_b64(protocol.load_private_key_pem(path.read_bytes())) == (
        protocol.public_key_b64(key)
    )
    assert not stale.exists()
