"""Zones in the console: the model and its validation, the services (a rename follows into
the rules, a delete while used is refused naming them), the API resource, rules and NAT
rules naming zones, and zones through export and import."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from compiler import PolicyDocument
from rules import services
from rules.exporter import export_document
from rules.importer import ImportFailed, import_document
from rules.models import Device, NatRule, Rule, RuleSet, Zone
from rules.selectors import policy_dict
from tests.support.api_cases import APIViewTestCases

pytestmark = pytest.mark.django_db


def make_zone(name: str, interfaces: list[str]) -> Zone:
    return services.zone_save(Zone(name=name, interfaces=interfaces))


def make_ruleset(name: str = "edge") -> RuleSet:
    return services.object_save(RuleSet(name=name))


def zoned_rule(ruleset: RuleSet, **kw) -> Rule:
    data = {"chain": "input", "action": "accept", "protocol": "tcp", "dports": ["22"], **kw}
    return services.rule_create(ruleset=ruleset, data=data)


class TestZoneAPI(APIViewTestCases.APIViewTestCase):
    model = Zone
    basename = "zone"
    create_data = [
        {"name": "dmz", "interfaces": ["eth2"]},
        {"name": "vpn", "interfaces": ["wg+", "tun0"], "description": "tunnels"},
        {"name": "guests", "interfaces": ["br-guest"]},
    ]
    update_data = {"interfaces": ["eth1", "eth3"], "description": "grown"}
    invalid_data = [
        ({"name": "toolong", "interfaces": ["a" * 16]}, "interfaces"),
        ({"name": "slash", "interfaces": ["eth0/1"]}, "interfaces"),
        ({"name": "empty", "interfaces": []}, "interfaces"),
        ({"name": "twice", "interfaces": ["eth0", "eth0"]}, "interfaces"),
        ({"name": "lan", "interfaces": ["eth9"]}, "name"),  # duplicate
        ({"name": "bad name", "interfaces": ["eth0"]}, "name"),
    ]
    filter_cases = [({"name": "lan"}, 1), ({"interface": "eth0"}, 1), ({"search": "wan"}, 1)]

    def make_objects(self):
        return [
            make_zone("lan", ["eth1", "veth+"]),
            make_zone("wan", ["eth0"]),
            make_zone("lab", ["eth5"]),
        ]


def test_rule_with_a_zone_compiles_from_the_database():
    make_zone("lan", ["eth1", "veth+"])
    zoned_rule(make_ruleset(), in_zone="lan")
    doc = PolicyDocument.from_dict(policy_dict())
    assert doc.zones[0].interfaces == ("eth1", "veth+")
    assert doc.rulesets[0].rules[0].in_zone == "lan"


def test_unknown_or_misplaced_zone_is_refused_on_the_field():
    rs = make_ruleset()
    make_zone("wan", ["eth0"])
    with pytest.raises(ValidationError) as exc:
        zoned_rule(rs, in_zone="nosuch")
    assert exc.value.message_dict == {"in_zone": ["unknown zone 'nosuch'"]}
    with pytest.raises(ValidationError) as exc:
        zoned_rule(rs, out_zone="wan")
    assert exc.value.message_dict == {"out_zone": ["out_zone cannot be matched in chain input"]}
    with pytest.raises(ValidationError) as exc:
        zoned_rule(rs, in_zone="wan", in_interface="eth0")
    assert "give either in_interface or in_zone, not both" in exc.value.message_dict["in_zone"]


def test_rename_follows_into_rules_and_nat_rules():
    zone = make_zone("lan", ["eth1"])
    rs = make_ruleset()
    rule = zoned_rule(rs, in_zone="lan")
    nat = services.nat_rule_create(nat=NatRule(ruleset=rs, type="masquerade", out_zone="lan"))
    zone.name = "inside"
    services.zone_save(zone)
    rule.refresh_from_db()
    nat.refresh_from_db()
    assert (rule.in_zone, nat.out_zone) == ("inside", "inside")
    PolicyDocument.from_dict(policy_dict())  # still a valid document


def test_delete_refused_naming_the_users_then_allowed():
    zone = make_zone("lan", ["eth1"])
    rs = make_ruleset()
    rule = zoned_rule(rs, in_zone="lan")
    with pytest.raises(services.ObjectInUse) as exc:
        services.zone_delete(zone)
    assert f"rule edge#{rule.position} ({rule.uuid})" in exc.value.messages[0]
    services.rule_delete(rule=rule)
    services.zone_delete(zone)
    assert not Zone.objects.exists()


def test_api_delete_of_a_used_zone_is_409_and_users_lists_them(api):
    zone = make_zone("lan", ["eth1"])
    rs = make_ruleset()
    services.nat_rule_create(nat=NatRule(ruleset=rs, type="masquerade", out_zone="lan"))
    response = api.delete(reverse("zone-detail", kwargs={"pk": zone.pk}))
    assert response.status_code == 409
    assert "NAT rule edge#" in str(response.json())
    users = api.get(reverse("zone-users", kwargs={"pk": zone.pk})).json()["users"]
    assert len(users) == 1 and users[0].startswith("NAT rule edge#")


def test_api_rule_takes_and_shows_zones(api):
    make_zone("lan", ["eth1"])
    rs = make_ruleset()
    data = {"ruleset": rs.pk, "chain": "input", "action": "accept", "in_zone": "lan"}
    response = api.post(reverse("rule-list"), data, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["in_zone"] == "lan"
    bad = api.post(reverse("rule-list"), {**data, "in_zone": "nosuch"}, format="json")
    assert bad.status_code == 400
    assert "in_zone" in bad.json()


def test_export_import_round_trip_with_zones():
    doc = {
        "version": 1,
        "zones": [{"name": "lan", "interfaces": ["eth1", "veth+"], "description": "inside"}],
        "rulesets": [
            {
                "name": "edge",
                "rules": [
                    {
                        "id": "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1",
                        "chain": "forward",
                        "action": "accept",
                        "in_zone": "lan",
                    }
                ],
                "nat": [
                    {
                        "id": "1b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1",
                        "type": "masquerade",
                        "out_zone": "lan",
                    }
                ],
            }
        ],
    }
    plan = import_document(doc)
    assert plan.created["zones"] == ["lan"]
    exported = export_document()
    assert exported["zones"] == doc["zones"]
    assert exported["rulesets"][0]["rules"][0]["in_zone"] == "lan"
    assert exported["rulesets"][0]["nat"][0]["out_zone"] == "lan"
    assert not import_document(exported).changed
    assert NatRule.objects.get().out_zone == "lan"
    # a document whose rules name a zone it does not define changes nothing
    with pytest.raises(ImportFailed, match="unknown zone 'lan'"):
        import_document({**doc, "zones": [], "prune": True})
    # a zone the document no longer names, and nothing uses, is pruned
    make_zone("spare", ["eth9"])
    plan = import_document({**doc, "prune": True})
    assert plan.deleted["zones"] == ["spare"]


def test_documents_without_zones_export_as_before():
    make_ruleset()
    assert "zones" not in export_document()


def test_device_analysis_warns_of_interfaces_the_hosts_facts_lack(viewer_api):
    doc = {
        "version": 1,
        "zones": [{"name": "lan", "interfaces": ["eth1", "veth+"]}],
        "rulesets": [
            {
                "name": "edge",
                "rules": [
                    {"chain": "input", "action": "accept", "in_zone": "lan"},
                    {"chain": "input", "action": "drop", "in_interface": "nosuchif0"},
                ],
            }
        ],
        "devices": [
            {
                "name": "fw",
                "address": "198.18.0.2",
                "rulesets": ["edge"],
                "management_sources": ["198.18.0.1"],
            }
        ],
    }
    import_document(doc)
    device = Device.objects.get(name="fw")
    url = reverse("device-analysis", kwargs={"pk": device.pk})

    def warned() -> list[str]:
        findings = viewer_api.get(url).json()["findings"]
        return sorted(
            f["message"].split("'")[1] for f in findings if f["kind"] == "unknown_interface"
        )

    assert warned() == []  # no facts: nothing to compare with
    device.facts = {"interfaces": ["eth0", "eth1", "lo"]}
    device.save()
    assert warned() == ["nosuchif0", "veth+"]
    device.facts = {"interfaces": ["eth1", "veth9", "nosuchif0"]}
    device.save()
    assert warned() == []


def make_net_zone(name: str, interfaces: list[str], networks: list[str]) -> Zone:
    return services.zone_save(Zone(name=name, interfaces=interfaces, networks=networks))


def test_zone_networks_validated_compiled_exported_and_imported():
    with pytest.raises(ValidationError) as exc:
        make_net_zone("bad", ["eth1"], ["198.18.1.0/3x", "198.18.2.0/24", "198.18.2.0/24"])
    assert list(exc.value.message_dict) == ["networks"]
    assert len(exc.value.message_dict["networks"]) == 2
    make_net_zone("lan", ["eth1"], ["198.18.1.0/24"])
    zoned_rule(make_ruleset(), in_zone="lan")
    doc = PolicyDocument.from_dict(policy_dict())
    assert doc.zones[0].networks == ("198.18.1.0/24",)
    exported = export_document()
    assert exported["zones"] == [
        {"name": "lan", "interfaces": ["eth1"], "networks": ["198.18.1.0/24"]}
    ]
    assert not import_document(exported).changed
    exported["zones"][0]["networks"] = ["198.18.1.0/25"]
    plan = import_document(exported)
    assert plan.updated["zones"] == ["lan"]
    assert Zone.objects.get().networks == ["198.18.1.0/25"]
    exported["zones"][0].pop("networks")
    import_document(exported)
    assert Zone.objects.get().networks == []


def test_api_zone_networks_and_bad_input(api):
    response = api.post(
        "/api/v1/zones/",
        {"name": "lan", "interfaces": ["eth1"], "networks": ["198.18.1.0/24"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["networks"] == ["198.18.1.0/24"]
    for bad in (["198.18.1."], "198.18.1.0/24", [7]):
        response = api.post(
            "/api/v1/zones/", {"name": "x", "interfaces": ["eth2"], "networks": bad}, format="json"
        )
        assert response.status_code == 400 and "networks" in response.json(), (
            bad,
            response.content,
        )


def test_trace_by_zone_answers_per_interface(api, viewer_api):
    make_net_zone("lan", ["eth1", "veth+"], ["198.18.1.0/24"])
    rs = make_ruleset()
    zoned_rule(rs, in_zone="lan")
    zoned_rule(rs, in_interface="veth0", action="drop")  # after: lan's rule decides veth0
    device = services.object_save(Device(name="fw", address="198.18.0.2"))
    services.device_refs.device_set_rulesets(device=device, rulesets=["edge"])
    url = f"/api/v1/devices/{device.pk}/trace/"
    query = {"target": "candidate", "protocol": "tcp", "destination": "198.18.0.2", "dport": "22"}
    body = viewer_api.get(url, {**query, "source": "198.18.1.5", "in_zone": "lan"}).json()
    assert body["in_zone"] == "lan" and body["verdict"] == "accept"
    assert [t["in_interface"] for t in body["traces"]] == ["eth1", "veth0"]
    # outside lan's networks: dropped on every interface of lan
    body = viewer_api.get(url, {**query, "source": "198.18.2.5", "in_zone": "lan"}).json()
    assert body["verdict"] == "drop"
    for params, field in (
        ({"in_zone": "nowhere"}, "in_zone"),
        ({"in_zone": "lan", "in_interface": "eth1"}, "in_zone"),
        ({"in_zone": "lan", "dport": "99999"}, "dport"),
    ):
        response = viewer_api.get(url, {**query, "source": "198.18.1.5", **params})
        assert response.status_code == 400 and field in response.json(), response.content


def test_zones_in_the_scope_of_a_prune():
    make_zone("lan", ["eth1"])
    make_zone("lab", ["eth5"])
    make_zone("spare", ["eth9"])
    zoned_rule(make_ruleset(), in_zone="lan")
    doc = export_document()
    doc["zones"] = [z for z in doc["zones"] if z["name"] == "lan"]
    # a scope that leaves zones out never prunes one
    plan = import_document({**doc, "scope": {"rulesets": ["edge"]}}, prune=True)
    assert not plan.deleted["zones"] and Zone.objects.count() == 3
    # a scope naming some zones prunes only those
    plan = import_document({**doc, "scope": {"zones": ["lab"]}}, prune=True)
    assert plan.deleted["zones"] == ["lab"]
    assert [k for k, v in plan.deleted.items() if v] == ["zones"]
    # all of the kind: the rest the document no longer names
    plan = import_document({**doc, "scope": {"zones": "all"}}, prune=True)
    assert plan.deleted["zones"] == ["spare"]
    assert list(Zone.objects.values_list("name", flat=True)) == ["lan"]
    # a zone still used is refused, naming the rule, and nothing changes
    doc["zones"] = []
    doc["rulesets"][0]["rules"] = []
    with pytest.raises(ImportFailed):
        import_document({**doc, "scope": {"zones": "all"}, "rulesets": []}, prune=True)
