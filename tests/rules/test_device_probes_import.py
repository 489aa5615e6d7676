"""Import and export of device (and device group) probes, and the import's refusal of
management sources that leave the console out."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from rules.console_sources import configured_sources, uncovered
from rules.exporter import export_document
from rules.importer import ImportFailed, import_document
from rules.models import Device, DeviceGroup

pytestmark = pytest.mark.django_db

PROBES = [
    {"type": "tcp", "host": "198.18.0.1", "port": 22, "timeout": 2},
    {"type": "http", "url": "https://198.18.0.1/health", "expect_status": 200},
]


def _doc(**device) -> dict:
    return {
        "version": 1,
        "device_groups": [{"name": "web", "probes": [{"type": "icmp", "host": "198.18.0.1"}]}],
        "devices": [
            {
                "name": "web-1",
                "address": "198.18.0.2",
                "groups": ["web"],
                "management_sources": ["198.18.0.1"],
                **device,
            }
        ],
    }


@pytest.fixture(autouse=True)
def console(settings):
    settings.RAMPART = {**settings.RAMPART, "CONSOLE_SOURCES": ["198.18.0.1"]}


def test_probes_import_export_and_reimport_unchanged():
    plan = import_document(_doc(probes=PROBES))
    assert plan.created["devices"] == ["web-1"]
    assert Device.objects.get(name="web-1").probes == PROBES
    assert DeviceGroup.objects.get(name="web").probes == [{"type": "icmp", "host": "198.18.0.1"}]
    exported = export_document()
    assert exported["devices"][0]["probes"] == PROBES
    assert list(exported["devices"][0]["probes"][1]) == ["type", "url", "expect_status"]
    assert exported["device_groups"][0]["probes"] == [{"type": "icmp", "host": "198.18.0.1"}]
    assert not import_document(exported).changed
    # dropping them from the document removes them
    plan = import_document(_doc())
    assert plan.updated["devices"] == ["web-1"] and Device.objects.get().probes == []
    assert "probes" not in export_document()["devices"][0]


def test_a_bad_probe_changes_nothing_and_is_named():
    with pytest.raises(ImportFailed) as err:
        import_document(_doc(probes=[{"type": "tcp", "host": "198.18.0.1", "port": 0}]))
    assert "devices[web-1].probes[0].port" in [e.path for e in err.value.errors]
    assert not Device.objects.exists()


@pytest.mark.parametrize("sources", [[], ["198.18.9.0/24"]])
def test_management_sources_leaving_the_console_out_are_refused(sources):
    with pytest.raises(ImportFailed) as err:
        import_document(_doc(management_sources=sources))
    assert [e.path for e in err.value.errors] == ["devices[web-1].management_sources"]
    assert not Device.objects.exists()


def test_an_admins_override_on_the_device_is_kept_by_import():
    import_document(_doc())
    Device.objects.filter(name="web-1").update(
        allow_console_lockout=True, console_lockout_reason="out-of-band only"
    )
    plan = import_document(_doc(management_sources=["198.18.9.1"]))
    assert plan.updated["devices"] == ["web-1"]
    device = Device.objects.get()
    assert device.management_sources == ["198.18.9.1"] and device.allow_console_lockout


def test_coverage_is_by_union_and_family(settings):
    assert uncovered(["198.18.0.0/24"], ["198.18.0.0/25", "198.18.0.128-198.18.0.255"]) == []
    assert uncovered(["198.18.0.0/24"], ["198.18.0.0/25"]) == ["198.18.0.0/24"]
    assert uncovered(["2001:2::1"], ["198.18.0.0/15"]) == ["2001:2::1"]
    settings.RAMPART = {**settings.RAMPART, "CONSOLE_SOURCES": "198.18.0.1, 2001:2::/64"}
    assert configured_sources() == ["198.18.0.1", "2001:2::/64"]
    settings.RAMPART = {**settings.RAMPART, "CONSOLE_SOURCES": ["198.18.0.0/33"]}
    with pytest.raises(ImproperlyConfigured, match="198.18.0.0/33"):
        configured_sources()
