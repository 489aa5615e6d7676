"""The device API: generic CRUD/permission cases, ordered name lists, read-only agent fields."""

from __future__ import annotations

import pytest

from rules import services
from rules.models import Device, DeviceGroup, RuleSet
from rules.services import device_refs
from tests.support.api_cases import APIViewTestCases

pytestmark = pytest.mark.django_db
MGMT = {"management_sources": ["198.18.0.1"]}


def make_rulesets(*names: str) -> list[RuleSet]:
    return [services.object_save(RuleSet(name=name)) for name in names]


def make_group(name: str, rulesets: list[str]) -> DeviceGroup:
    group = services.object_save(DeviceGroup(name=name))
    device_refs.device_group_set_rulesets(group=group, rulesets=rulesets)
    return group


class TestDeviceGroupAPI(APIViewTestCases.APIViewTestCase):
    model = DeviceGroup
    basename = "devicegroup"
    create_data = [
        {"name": "db", "rulesets": ["base", "db-only"], "description": "databases"},
        {"name": "empty", "rulesets": []},
    ]
    update_data = {"rulesets": ["db-only", "base"], "description": "reordered"}
    invalid_data = [
        ({"name": "x", "rulesets": ["no-such-set"]}, "rulesets"),
        ({"name": "y", "rulesets": ["base", "base"]}, "rulesets"),
        ({"name": "web", "rulesets": []}, "name"),
    ]
    filter_cases = [({"ruleset": "base"}, 2), ({"name": "web"}, 1)]

    def make_objects(self):
        make_rulesets("base", "web-baseline", "db-only")
        return [
            make_group("edge", ["base", "web-baseline"]),
            make_group("web", ["base"]),
            make_group("spare", []),
        ]

    def test_rulesets_keep_their_order(self, api, objects):
        response = api.patch(
            self.detail_url(objects[0]), {"rulesets": ["web-baseline", "base"]}, format="json"
        )
        assert response.data["rulesets"] == ["web-baseline", "base"]
        assert [link.ruleset.name for link in objects[0].ruleset_links.order_by("position")] == [
            "web-baseline",
            "base",
        ]

    def test_deleting_a_group_with_devices_is_409_naming_them(self, api, objects):
        device = services.object_save(Device(name="web-1", address="198.18.0.2"))
        device_refs.device_set_groups(device=device, groups=["web"])
        response = api.delete(self.detail_url(objects[1]))
        assert response.status_code == 409
        assert "device web-1" in response.data["non_field_errors"][0]

    def test_deleting_a_rule_set_a_group_uses_is_409(self, api, objects):
        base = RuleSet.objects.get(name="base")
        response = api.delete(f"/api/v1/rulesets/{base.pk}/")
        assert response.status_code == 409
        assert "device group edge" in response.data["non_field_errors"][0]


class TestDeviceAPI(APIViewTestCases.APIViewTestCase):
    model = Device
    basename = "device"
    create_data = [
        {
            "name": "web-2",
            "address": "198.18.0.3",
            "groups": ["web", "edge"],
            "rulesets": ["own"],
            "default_policy": {"input": "drop", "forward": "drop", "output": "accept"},
            "management_sources": ["198.18.0.1"],
            "tags": ["dc1"],
        },
        {
            "name": "v6",
            "address": "2001:2::2",
            "agent_port": 9000,
            "stateful": False,
            "allow_loopback": False,
            "default_policy": {"output": "drop"},
            "management_sources": ["2001:2::/64"],
        },
    ]
    update_data = {
        "groups": ["edge", "web"],
        "rulesets": [],
        "default_policy": {"input": "reject"},
        "description": "changed",
    }
    invalid_data = [
        ({"name": "p", "address": "198.18.0.9", "agent_port": 70000, **MGMT}, "agent_port"),
        ({"name": "a", "address": "198.18.0.0/33", **MGMT}, "address"),
        ({"name": "g", "address": "198.18.0.9", "groups": ["nope"], **MGMT}, "groups"),
        ({"name": "r", "address": "198.18.0.9", "rulesets": ["nope"], **MGMT}, "rulesets"),
        (
            {"name": "m", "address": "198.18.0.9", "management_sources": ["198.18.0.0/33"]},
            "management_sources",
        ),
        ({"name": "e", "address": "198.18.0.9"}, "management_sources"),
        (
            {"name": "d", "address": "198.18.0.9", "default_policy": {"input": "maybe"}, **MGMT},
            "default_policy",
        ),
        ({"name": "web-1", "address": "198.18.0.9", **MGMT}, "name"),
        (
            {
                "name": "q",
                "address": "198.18.0.9",
                "probes": [{"type": "tcp", "host": "x"}],
                **MGMT,
            },
            "probes[0].port",
        ),
    ]
    filter_cases = [
        ({"group": "web"}, 2),
        ({"ruleset": "own"}, 1),
        ({"status": "unknown"}, 3),
        ({"search": "198.18.0.2"}, 1),
        ({"enrolled": "true"}, 0),
    ]

    def make_objects(self):
        make_rulesets("base", "own")
        make_group("web", ["base"])
        make_group("edge", [])
        devices = []
        for name, address, groups, rulesets in (
            ("db-1", "198.18.0.4", ["web", "edge"], ["own"]),
            ("web-1", "198.18.0.2", ["web"], []),
            ("spare", "198.18.0.5", [], []),
        ):
            device = services.object_save(Device(name=name, address=address))
            device_refs.device_set_groups(device=device, groups=groups)
            device_refs.device_set_rulesets(device=device, rulesets=rulesets)
            devices.append(device)
        return devices

    def test_agent_fields_are_read_only(self, api, objects):
        response = api.patch(
            self.detail_url(objects[0]),
            {"status": "online", "applied_version": 7, "agent_public_key": "x", "drifted": True},
            format="json",
        )
        assert response.status_code == 200
        objects[0].refresh_from_db()
        assert (
            objects[0].status,
            objects[0].applied_version,
            objects[0].agent_public_key,
            objects[0].drifted,
        ) == ("unknown", 0, "", False)

    def test_groups_and_rulesets_read_back_in_order(self, viewer_api, objects):
        data = viewer_api.get(self.detail_url(objects[0])).data
        assert (data["groups"], data["rulesets"]) == (["web", "edge"], ["own"])
        assert data["default_policy"] == {"input": "drop", "forward": "drop", "output": "accept"}

    def test_a_failed_reference_update_changes_nothing(self, api, objects):
        response = api.patch(
            self.detail_url(objects[0]), {"description": "new", "groups": ["nope"]}, format="json"
        )
        assert response.status_code == 400 and "groups" in response.data
        objects[0].refresh_from_db()
        assert objects[0].description == ""
        assert [link.group.name for link in objects[0].group_links.order_by("position")] == [
            "web",
            "edge",
        ]
