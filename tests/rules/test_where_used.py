"""Where-used through groups (API and selector), the unused-objects report, and delete
refusals that name transitive users."""

from __future__ import annotations

import pytest

from rules import services
from rules.models import (
    AddressGroup,
    AddressObject,
    Device,
    DeviceGroup,
    NatRule,
    RuleSet,
    Service,
    ServiceGroup,
    Zone,
)
from rules.services import device_refs

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy() -> dict:
    """web-1 ∈ web ∈ dmz; rule edge#1 uses dmz; edge applies to device fw-1 directly and to
    fw-2 through the device group perimeter; spare objects nothing uses."""
    web1 = services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    services.object_save(AddressObject(name="lonely", value="198.18.9.9"))
    services.object_save(AddressObject(name="nat-only", value="198.18.7.7"))
    web = services.object_save(AddressGroup(name="web"))
    services.address_group_set_members(group=web, members=["web-1"])
    dmz = services.object_save(AddressGroup(name="dmz"))
    services.address_group_set_members(group=dmz, members=["web", "198.18.3.0/24"])
    attic = services.object_save(AddressGroup(name="attic"))
    services.address_group_set_members(group=attic, members=["lonely"])
    https = services.object_save(Service(name="https", protocol="tcp", ports=["443"]))
    services.object_save(Service(name="gopher", protocol="tcp", ports=["70"]))
    tls = services.object_save(ServiceGroup(name="tls"))
    services.service_group_set_members(group=tls, members=["https"])
    edge = services.object_save(RuleSet(name="edge"))
    services.object_save(RuleSet(name="shelf"))
    services.rule_create(ruleset=edge, data={"action": "accept", "destinations": ["dmz"]})
    rule = services.rule_create(
        ruleset=edge, data={"action": "accept", "services": ["tls"], "comment": "tls"}
    )
    services.nat_rule_create(
        nat=NatRule(ruleset=edge, type="dnat", destinations=["nat-only"], to="198.18.1.10")
    )
    fw1 = services.object_save(
        Device(name="fw-1", address="198.18.0.2", management_sources=["web"])
    )
    device_refs.device_set_rulesets(device=fw1, rulesets=["edge"])
    perimeter = services.object_save(DeviceGroup(name="perimeter"))
    device_refs.device_group_set_rulesets(group=perimeter, rulesets=["edge"])
    fw2 = services.object_save(Device(name="fw-2", address="198.18.0.3"))
    device_refs.device_set_groups(device=fw2, groups=["perimeter"])
    return {"web-1": web1, "https": https, "edge": edge, "tls-rule": rule, "dmz": dmz}


def _users(api, path: str) -> dict[str, dict]:
    response = api.get(path)
    assert response.status_code == 200, response.data
    return {u["name"]: u for u in response.data["users"]}


def test_an_address_in_a_group_shows_the_rule_rule_set_and_devices_with_the_path(
    viewer_api, policy
):
    users = _users(viewer_api, f"/api/v1/addresses/{policy['web-1'].pk}/where-used/")
    assert users["address group web"]["direct"] is True
    assert users["address group dmz"]["via"] == "address group web"
    rule = users["rule edge#1"]
    assert rule["kind"] == "rule" and not rule["direct"]
    assert rule["path"] == ["address group web", "address group dmz", "rule edge#1"]
    assert users["rule set edge"]["via"] == "address group web → address group dmz → rule edge#1"
    assert users["device fw-1"]["via"].endswith("rule edge#1 → rule set edge")
    assert users["device group perimeter"]["kind"] == "device group"
    assert users["device fw-2"]["path"][-2:] == ["device group perimeter", "device fw-2"]
    # management sources name the group web: a use through it
    assert users["device fw-1 (management sources)"]["via"] == "address group web"


def test_where_used_for_services_groups_and_rule_sets(viewer_api, policy):
    users = _users(viewer_api, f"/api/v1/services/{policy['https'].pk}/where-used/")
    assert users["rule edge#2"]["via"] == "service group tls"
    assert users["rule edge#2"]["rule_uuid"] == str(policy["tls-rule"].uuid)
    dmz = _users(viewer_api, f"/api/v1/address-groups/{policy['dmz'].pk}/where-used/")
    assert dmz["rule edge#1"]["direct"] and "address group web" not in dmz
    tls = ServiceGroup.objects.get(name="tls")
    assert "rule set edge" in _users(viewer_api, f"/api/v1/service-groups/{tls.pk}/where-used/")
    rs = _users(viewer_api, f"/api/v1/rulesets/{policy['edge'].pk}/where-used/")
    assert set(rs) == {"device fw-1", "device group perimeter", "device fw-2"}
    unused = viewer_api.get(f"/api/v1/rulesets/{RuleSet.objects.get(name='shelf').pk}/where-used/")
    assert unused.data["used"] is False and unused.data["users"] == []


def test_nat_rules_count_as_users(viewer_api, policy):
    nat_only = AddressObject.objects.get(name="nat-only")
    users = _users(viewer_api, f"/api/v1/addresses/{nat_only.pk}/where-used/")
    assert users["NAT rule edge#0"]["direct"] and "device fw-2" in users


def test_the_unused_report_is_transitive(viewer_api, policy):
    response = viewer_api.get("/api/v1/objects/unused/")
    assert response.status_code == 200
    found = {(r["kind"], r["name"]): r["reason"] for r in response.data["results"]}
    assert response.data["count"] == len(found)
    # lonely is only in attic, which nothing uses: both are unused
    assert found[("address", "lonely")] == "only in groups nothing uses: attic"
    assert ("address group", "attic") in found
    assert ("service", "gopher") in found and ("rule set", "shelf") in found
    for used in [("address", "web-1"), ("address group", "web"), ("address", "nat-only")]:
        assert used not in found
    assert ("service", "https") not in found and ("rule set", "edge") not in found
    only = viewer_api.get("/api/v1/objects/unused/", {"kind": "rule set"}).data
    assert [r["name"] for r in only["results"]] == ["shelf"]
    assert viewer_api.get("/api/v1/objects/unused/", {"kind": "nope"}).status_code == 400
    assert viewer_api.get("/api/v1/objects/unused/", {"knd": "x"}).status_code == 400


def test_a_rule_set_of_an_empty_device_group_is_unused(viewer_api, policy):
    empty = services.object_save(DeviceGroup(name="empty"))
    device_refs.device_group_set_rulesets(group=empty, rulesets=["shelf"])
    rows = viewer_api.get("/api/v1/objects/unused/", {"kind": "rule set"}).data["results"]
    assert rows[0]["reason"] == "only device groups without devices: empty"


def test_a_delete_refusal_names_the_transitive_users(api, policy):
    response = api.delete(f"/api/v1/addresses/{policy['web-1'].pk}/")
    assert response.status_code == 409
    message = response.data["non_field_errors"][0]
    assert message.startswith("web-1 is still in use by: address group web; and ")
    assert "more via groups: " in message
    assert "rule edge#1 (via address group web → address group dmz)" in message
    assert AddressObject.objects.filter(name="web-1").exists()


def test_where_used_is_in_the_schema(viewer_api):
    schema = viewer_api.get("/api/schema/", {"format": "json"}).json()
    kinds = ["addresses", "address-groups", "services", "service-groups", "rulesets", "zones"]
    for kind in [*kinds, "device-groups"]:
        assert f"/api/v1/{kind}/{{id}}/where-used/" in schema["paths"]
    assert "/api/v1/objects/unused/" in schema["paths"]


def test_zone_where_used_follows_rules_to_devices(viewer_api, policy):
    lan = services.zone_save(Zone(name="lan", interfaces=["eth1", "veth+"]))
    spare = services.zone_save(Zone(name="spare", interfaces=["eth9"]))
    services.rule_create(
        ruleset=policy["edge"], data={"chain": "forward", "action": "accept", "in_zone": "lan"}
    )
    services.nat_rule_create(nat=NatRule(ruleset=policy["edge"], type="masquerade", out_zone="lan"))
    users = _users(viewer_api, f"/api/v1/zones/{lan.pk}/where-used/")
    assert users["rule edge#3"]["direct"] and users["NAT rule edge#1"]["direct"]
    assert users["rule set edge"]["via"].startswith(("rule edge#3", "NAT rule edge#1"))
    assert "device fw-1" in users and "device fw-2" in users and "device group perimeter" in users
    body = viewer_api.get(f"/api/v1/zones/{spare.pk}/where-used/").json()
    assert (body["kind"], body["used"], body["users"]) == ("zone", False, [])
    unused = viewer_api.get("/api/v1/objects/unused/", {"kind": "zone"}).data["results"]
    assert [(r["name"], r["reason"]) for r in unused] == [("spare", "no rule or NAT rule names it")]


def test_device_group_where_used_lists_its_devices(viewer_api, policy):
    perimeter = DeviceGroup.objects.get(name="perimeter")
    users = _users(viewer_api, f"/api/v1/device-groups/{perimeter.pk}/where-used/")
    assert list(users) == ["device fw-2"] and users["device fw-2"]["direct"]
    assert viewer_api.get("/api/v1/device-groups/999999/where-used/").status_code == 404
