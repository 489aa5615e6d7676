"""The device settings page (probes editor, management sources that must cover the console,
the admin's override) and the deploy form's probe override."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.models import Deployment
from dashboard.forms.probes import format_probes, parse_line, parse_probes
from rules.models import Device
from tests.support.deploy import make_device, make_policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def device(settings):
    settings.RAMPART = {**settings.RAMPART, "CONSOLE_SOURCES": ["198.18.0.1"]}
    return make_device("web-1", management_sources=["198.18.0.0/24"])


def _post(client, device, **data):
    body = {"management_sources": "198.18.0.0/24", "probes": "", **data}
    return client.post(reverse("dashboard:device-settings", args=[device.pk]), body)


def test_probe_lines_parse_and_format_back():
    text = "tcp 198.18.0.1:22 timeout=2\nicmp 198.18.0.1\n\nhttps://198.18.0.1/health 204 timeout=0.5\ntcp [2001:2::1]:443"
    probes = parse_probes(text)
    assert probes == [
        {"type": "tcp", "host": "198.18.0.1", "port": 22, "timeout": 2},
        {"type": "icmp", "host": "198.18.0.1"},
        {"type": "http", "url": "https://198.18.0.1/health", "expect_status": 204, "timeout": 0.5},
        {"type": "tcp", "host": "2001:2::1", "port": 443},
    ]
    assert parse_probes(format_probes(probes)) == probes
    assert parse_line("http http://h/ok") == {"type": "http", "url": "http://h/ok"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tcp 198.18.0.1", "line 1 (port): is required"),
        ("icmp 198.18.0.1\ntcp 198.18.0.1:99999", "line 2 (port): must be a port 1..65535"),
        ("icmp 198.18.0.1 timeout=45", "line 1 (timeout): must be a number of seconds, 0.1..30"),
        ("udp 198.18.0.1:53", "line 1: expected `tcp HOST:PORT`"),
        ("ftp://198.18.0.1/ 200", "line 1 (url)"),
    ],
)
def test_a_bad_probe_line_is_named(operator_client, device, text, words):
    page = _post(operator_client, device, probes=text)
    assert page.status_code == 200
    assert words in page.content.decode()
    device.refresh_from_db()
    assert device.probes == []


def test_probes_are_saved_and_shown(operator_client, device):
    saved = _post(operator_client, device, probes="tcp 198.18.0.1:22 timeout=2\nicmp 198.18.0.1")
    assert saved.status_code == 302
    device.refresh_from_db()
    assert device.probes == [
        {"type": "tcp", "host": "198.18.0.1", "port": 22, "timeout": 2},
        {"type": "icmp", "host": "198.18.0.1"},
    ]
    page = operator_client.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    assert "tcp 198.18.0.1:22 timeout=2" in page
    form = operator_client.get(reverse("dashboard:device-settings", args=[device.pk]))
    assert "tcp 198.18.0.1:22 timeout=2\nicmp 198.18.0.1" in form.content.decode()


def test_sources_leaving_the_console_out_are_refused(operator_client, device):
    page = _post(operator_client, device, management_sources="198.18.9.0/24")
    assert page.status_code == 200
    assert "must cover the console&#x27;s address 198.18.0.1" in page.content.decode()
    page = _post(operator_client, device, management_sources="")
    assert "must not be empty" in page.content.decode()
    device.refresh_from_db()
    assert device.management_sources == ["198.18.0.0/24"]


def test_only_admins_see_and_set_the_override(client, users, device):
    client.force_login(users["operator"])
    form = client.get(reverse("dashboard:device-settings", args=[device.pk])).content.decode()
    assert "allow_console_lockout" not in form
    # a crafted post is ignored: the field is not the operator's
    _post(client, device, management_sources="198.18.9.0/24", allow_console_lockout="on")
    device.refresh_from_db()
    assert not device.allow_console_lockout
    client.force_login(users["admin"])
    page = _post(client, device, management_sources="198.18.9.0/24", allow_console_lockout="on")
    assert "say why the console may be locked out" in page.content.decode()
    saved = _post(
        client,
        device,
        management_sources="198.18.9.0/24",
        allow_console_lockout="on",
        console_lockout_reason="out-of-band access only",
    )
    assert saved.status_code == 302
    device.refresh_from_db()
    assert device.allow_console_lockout and device.management_sources == ["198.18.9.0/24"]
    detail = client.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    assert 'data-testid="lockout-override"' in detail and "out-of-band access only" in detail


def test_the_detail_page_warns_when_the_console_is_left_out(operator_client, device):
    Device.objects.filter(pk=device.pk).update(management_sources=["198.18.9.1"])
    page = operator_client.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    assert 'data-testid="lockout-warning"' in page and "198.18.0.1" in page


def test_viewers_cannot_open_the_settings(client, users, device):
    client.force_login(users["viewer"])
    assert client.get(reverse("dashboard:device-settings", args=[device.pk])).status_code == 403


def test_deploy_form_probe_override(operator_client):
    _, group = make_policy()
    device = make_device("web-2", group=group)
    url = reverse("dashboard:deploy")
    bad = operator_client.post(url, {"device": device.pk, "probes": "tcp 198.18.0.1"})
    assert not Deployment.objects.exists()
    assert bad.status_code == 302
    operator_client.post(url, {"device": device.pk, "probes": "icmp 198.18.0.1 timeout=1"})
    assert Deployment.objects.get().probes == [{"type": "icmp", "host": "198.18.0.1", "timeout": 1}]
    operator_client.post(url, {"device": device.pk, "probes": "none"})
    operator_client.post(url, {"device": device.pk})
    assert [d.probes for d in Deployment.objects.order_by("pk")][1:] == [[], None]
    page = operator_client.get(reverse("dashboard:deployments")).content.decode()
    assert 'name="probes"' in page
