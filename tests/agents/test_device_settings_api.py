"""Device probes and management sources over the API: field errors, device-group probes,
the console's addresses (setting or where the agent saw it), the admin's audited override,
the per-deployment probe override, and the poll that records where the console is seen."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agents import enqueue, services
from core.audit.models import AuditEntry
from rules import services as rules_services
from rules.models import AddressGroup, AddressObject, Device, DeviceGroup
from tests.support.deploy import local_agent, make_device, make_policy

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]
URL = "/api/v1/devices/"


@pytest.fixture
def admin_api(api_client_for, users):
    return api_client_for(users["admin"])


@pytest.fixture
def console_sources(settings):
    def set_to(*cidrs: str) -> None:
        settings.RAMPART = {**settings.RAMPART, "CONSOLE_SOURCES": list(cidrs)}

    set_to()
    return set_to


def _create(api, **fields):
    return api.post(URL, {"name": "web-9", "address": "198.18.0.9", **fields}, format="json")


# --- probes ------------------------------------------------------------------------------


def test_probes_are_stored_and_read_back(api, console_sources):
    probes = [
        {"type": "tcp", "host": "198.18.0.1", "port": 22, "timeout": 2},
        {"type": "icmp", "host": "198.18.0.1"},
        {"type": "http", "url": "https://198.18.0.1/health", "expect_status": 204},
    ]
    resp = _create(api, management_sources=["198.18.0.1"], probes=probes)
    assert resp.status_code == 201, resp.data
    assert resp.data["probes"] == probes
    assert Device.objects.get(name="web-9").probes == probes


@pytest.mark.parametrize(
    ("probe", "field"),
    [
        ({"type": "tcp", "host": "198.18.0.1", "port": 0}, "probes[1].port"),
        ({"type": "tcp", "host": "198.18.0.1"}, "probes[1].port"),
        ({"type": "icmp", "host": "-f"}, "probes[1].host"),
        ({"type": "icmp", "host": "198.18.0.1", "timeout": 31}, "probes[1].timeout"),
        ({"type": "icmp", "host": "198.18.0.1", "timeout": 0.05}, "probes[1].timeout"),
        ({"type": "http", "url": "ftp://198.18.0.1/"}, "probes[1].url"),
        ({"type": "http", "url": "https://x/", "expect_status": 99}, "probes[1].expect_status"),
        ({"type": "udp", "host": "198.18.0.1"}, "probes[1].type"),
        ({"type": "icmp", "host": "198.18.0.1", "port": 1}, "probes[1].port"),
    ],
)
def test_a_bad_probe_is_a_400_naming_its_field(api, console_sources, probe, field):
    good = {"type": "icmp", "host": "198.18.0.1"}
    resp = _create(api, management_sources=["198.18.0.1"], probes=[good, probe])
    assert resp.status_code == 400 and field in resp.data, resp.data
    assert not Device.objects.filter(name="web-9").exists()


def test_device_group_probes_are_validated(api):
    resp = api.post(
        "/api/v1/device-groups/",
        {"name": "g", "rulesets": [], "probes": [{"type": "tcp", "host": "h", "port": 99999}]},
        format="json",
    )
    assert resp.status_code == 400 and "probes[0].port" in resp.data
    ok = [{"type": "icmp", "host": "198.18.0.1", "timeout": 1.5}]
    resp = api.post(
        "/api/v1/device-groups/", {"name": "g", "rulesets": [], "probes": ok}, format="json"
    )
    assert resp.status_code == 201 and DeviceGroup.objects.get(name="g").probes == ok


# --- management sources cover the console ------------------------------------------------


def test_empty_management_sources_are_refused(api, console_sources):
    resp = _create(api)
    assert resp.status_code == 400
    assert "must not be empty" in resp.data["management_sources"][0]


def test_sources_must_cover_the_configured_console_sources(api, console_sources):
    console_sources("198.18.7.0/28", "2001:2::5")
    resp = _create(api, management_sources=["198.18.7.0/29", "2001:2::/64"])
    assert resp.status_code == 400
    assert "198.18.7.0/28" in resp.data["management_sources"][0]
    assert "2001:2::5" not in resp.data["management_sources"][0]
    # two halves cover the whole
    resp = _create(api, management_sources=["198.18.7.0/29", "198.18.7.8/29", "2001:2::/64"])
    assert resp.status_code == 201, resp.data


def test_address_names_and_groups_are_resolved(api, console_sources):
    console_sources("198.18.7.1", "198.18.8.1")
    rules_services.object_save(AddressObject(name="console-a", value="198.18.7.0/24"))
    rules_services.object_save(AddressObject(name="console-b", value="198.18.8.1-198.18.8.9"))
    group = rules_services.object_save(AddressGroup(name="consoles"))
    rules_services.address_group_set_members(group=group, members=["console-b"])
    assert _create(api, management_sources=["console-a"]).status_code == 400
    resp = _create(api, management_sources=["console-a", "consoles"])
    assert resp.status_code == 201, resp.data


def test_without_the_setting_where_the_agent_saw_the_console_counts(api, console_sources):
    device = make_device("web-1", management_sources=["198.18.0.0/24"])
    Device.objects.filter(pk=device.pk).update(console_seen_from="198.18.5.5")
    resp = api.patch(f"{URL}{device.pk}/", {"management_sources": ["198.18.0.1"]}, format="json")
    assert resp.status_code == 400 and "198.18.5.5" in resp.data["management_sources"][0]
    resp = api.patch(f"{URL}{device.pk}/", {"management_sources": ["198.18.5.0/24"]}, format="json")
    assert resp.status_code == 200, resp.data
    # an edit that leaves the sources alone is not refused
    assert api.patch(f"{URL}{device.pk}/", {"description": "x"}, format="json").status_code == 200


def test_only_an_admin_may_override_and_with_a_reason(api, admin_api, console_sources):
    console_sources("198.18.7.1")
    override = {"allow_console_lockout": True, "console_lockout_reason": "reached over a VPN"}
    resp = _create(api, management_sources=["198.18.0.1"], **override)
    assert resp.status_code == 403
    resp = _create(admin_api, management_sources=["198.18.0.1"], allow_console_lockout=True)
    assert resp.status_code == 400 and "console_lockout_reason" in resp.data
    resp = _create(admin_api, management_sources=[], **override)
    assert resp.status_code == 201, resp.data
    device = Device.objects.get(name="web-9")
    assert device.allow_console_lockout and device.console_lockout_reason == "reached over a VPN"
    entry = AuditEntry.objects.filter(object_type="rules.device", object_id=str(device.pk)).last()
    assert entry is not None and entry.after["allow_console_lockout"] is True
    assert entry.after["console_lockout_reason"] == "reached over a VPN"
    # an operator may edit the device, not take the override away
    resp = api.patch(f"{URL}{device.pk}/", {"allow_console_lockout": False}, format="json")
    assert resp.status_code == 403
    resp = admin_api.patch(f"{URL}{device.pk}/", {"allow_console_lockout": False}, format="json")
    assert resp.status_code == 400 and "management_sources" in resp.data


# --- the per-deployment override ---------------------------------------------------------


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(
        enqueue, "current_app", SimpleNamespace(send_task=lambda name, args: calls.extend(args))
    )
    return calls


def test_deployment_probe_override_is_checked_and_kept(api, sent):
    _, group = make_policy()
    device = make_device("web-1", group=group)
    body = {"devices": [device.pk], "probes": [{"type": "tcp", "host": "h", "port": 22}, 7]}
    resp = api.post("/api/v1/deployments/", body, format="json")
    assert resp.status_code == 400 and "probes[1]" in resp.data, resp.data
    probes = [{"type": "tcp", "host": "198.18.0.1", "port": 22, "timeout": 0.5}]
    resp = api.post(
        "/api/v1/deployments/", {"devices": [device.pk], "probes": probes}, format="json"
    )
    assert resp.status_code == 202, resp.data
    assert resp.data["probes"] == probes
    resp = api.post("/api/v1/deployments/", {"devices": [device.pk]}, format="json")
    assert resp.data["probes"] is None


def test_deploy_service_refuses_bad_probes_naming_the_field():
    from django.core.exceptions import ValidationError

    _, group = make_policy()
    device = make_device("web-1", group=group)
    with pytest.raises(ValidationError) as err:
        services.deploy_create(devices=[device.pk], probes=[{"type": "icmp"}])
    assert "probes[0].host" in err.value.message_dict


# --- where the agent saw the console -----------------------------------------------------


def test_status_poll_records_where_the_agent_saw_the_console(tmp_path, deploy_console):
    with local_agent(tmp_path / "agent", deploy_console) as agent:
        device = make_device("web-1", agent=agent)
        services.status_poll(device_id=device.pk)
    device.refresh_from_db()
    assert device.console_seen_from == "127.0.0.1"
