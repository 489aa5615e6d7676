"""The policy API: generic CRUD/permission cases per model, then what is special to each."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from rules import services
from rules.models import AddressGroup, AddressObject, NatRule, Rule, RuleSet, Service, ServiceGroup
from tests.support.api_cases import APIViewTestCases

pytestmark = pytest.mark.django_db


def make_address(name: str, value: str) -> AddressObject:
    return services.object_save(AddressObject(name=name, value=value))


def make_address_group(name: str, members: list[str]) -> AddressGroup:
    group = services.object_save(AddressGroup(name=name))
    services.address_group_set_members(group=group, members=members)
    return group


def make_service(name: str, protocol: str = "tcp", ports: list[str] | None = None) -> Service:
    return services.object_save(Service(name=name, protocol=protocol, ports=ports or []))


class TestAddressObjectAPI(APIViewTestCases.APIViewTestCase):
    model = AddressObject
    basename = "addressobject"
    create_data = [
        {"name": "web-2", "value": "198.18.1.11"},
        {"name": "lab6", "value": "2001:2::/64", "description": "IPv6 lab"},
        {"name": "pool2", "value": "198.18.5.10-198.18.5.99"},
    ]
    update_data = {"value": "198.18.9.0/24", "description": "moved"}
    invalid_data = [
        ({"name": "bad-prefix", "value": "198.18.0.0/33"}, "value"),
        ({"name": "backwards", "value": "198.18.4.99-198.18.4.10"}, "value"),
        ({"name": "office", "value": "198.18.0.1"}, "name"),  # duplicate
        ({"name": "198.18.0.1", "value": "198.18.0.1"}, "name"),  # reads as an address
        ({"name": "nothing"}, "value"),
    ]
    filter_cases = [
        ({"name": "office"}, 1),
        ({"value__icontains": "198.18.1"}, 1),
        ({"search": "pool"}, 1),
    ]

    def make_objects(self):
        return [
            make_address("office", "198.18.0.0/24"),
            make_address("web-1", "198.18.1.10"),
            make_address("pool", "198.18.4.10-198.18.4.99"),
        ]

    def test_kind_and_family_are_reported(self, viewer_api, objects):
        data = viewer_api.get(self.detail_url(objects[2])).data
        assert (data["kind"], data["family"]) == ("range", 4)

    def test_deleting_an_address_in_use_is_409_naming_the_users(self, api, objects):
        make_address_group("web", ["web-1"])
        rs = services.object_save(RuleSet(name="rs"))
        rule = services.rule_create(ruleset=rs, data={"destinations": ["web-1"]})
        response = api.delete(self.detail_url(objects[1]))
        assert response.status_code == 409
        message = response.data["non_field_errors"][0]
        assert "address group web" in message and str(rule.uuid) in message
        assert AddressObject.objects.filter(name="web-1").exists()

    def test_a_name_used_by_an_address_group_is_refused(self, api, objects):
        make_address_group("servers", ["web-1"])
        response = api.post(
            self.list_url(), {"name": "servers", "value": "198.18.7.1"}, format="json"
        )
        assert response.status_code == 400 and "name" in response.data


class TestAddressGroupAPI(APIViewTestCases.APIViewTestCase):
    model = AddressGroup
    basename = "addressgroup"
    create_data = [
        {"name": "mixed", "members": ["web-1", "198.18.1.11", "2001:2::10"]},
        {"name": "nested", "members": ["web", "office"], "description": "groups in groups"},
        {"name": "empty", "members": []},
    ]
    update_data = {"members": ["office", "198.18.3.0/24"], "description": "changed"}
    invalid_data = [
        ({"name": "loop", "members": ["loop"]}, "members"),
        ({"name": "unknown", "members": ["no-such-thing"]}, "members"),
        ({"name": "bad-literal", "members": ["198.18.0.0/33"]}, "members"),
        ({"name": "web", "members": []}, "name"),
    ]
    filter_cases = [
        ({"member": "web-1"}, 1),
        ({"member": "198.18.2.1"}, 1),
        ({"name__icontains": "e"}, 3),
    ]

    def make_objects(self):
        make_address("office", "198.18.0.0/24")
        make_address("web-1", "198.18.1.10")
        return [
            make_address_group("web", ["web-1"]),
            make_address_group("edge", ["198.18.2.1", "office"]),
            make_address_group("spare", []),
        ]

    def test_members_keep_their_order(self, api, objects):
        members = ["198.18.9.9", "web", "office", "web-1"]
        response = api.post(self.list_url(), {"name": "ordered", "members": members}, format="json")
        assert response.data["members"] == members

    def test_a_group_cannot_contain_itself_indirectly(self, api, objects):
        make_address_group("outer", ["web"])
        response = api.patch(self.detail_url(objects[0]), {"members": ["outer"]}, format="json")
        assert response.status_code == 400
        assert "cannot contain itself" in response.data["members"][0]
        assert [m.ref for m in objects[0].members.all()] == ["web-1"]

    def test_deleting_a_group_used_by_another_is_409(self, api, objects):
        make_address_group("outer", ["web"])
        response = api.delete(self.detail_url(objects[0]))
        assert response.status_code == 409
        assert "address group outer" in response.data["non_field_errors"][0]

    def test_a_failed_member_update_changes_nothing(self, api, objects):
        response = api.patch(
            self.detail_url(objects[0]), {"description": "new", "members": ["nope"]}, format="json"
        )
        assert response.status_code == 400
        objects[0].refresh_from_db()
        assert objects[0].description == ""


class TestServiceAPI(APIViewTestCases.APIViewTestCase):
    model = Service
    basename = "service"
    create_data = [
        {"name": "http-alt", "protocol": "tcp", "ports": ["8080", "8000-8100"]},
        {"name": "ntp", "protocol": "udp", "ports": ["123"], "source_ports": ["123"]},
        {"name": "ping", "protocol": "icmp", "icmp_type": "echo-request"},
    ]
    update_data = {"ports": ["443", "8443"], "description": "tls"}
    invalid_data = [
        ({"name": "huge", "protocol": "tcp", "ports": ["70000"]}, "ports"),
        ({"name": "backwards", "protocol": "tcp", "ports": ["9000-8000"]}, "ports"),
        ({"name": "icmp-ports", "protocol": "icmp", "ports": ["80"]}, "ports"),
        ({"name": "weird", "protocol": "sctp"}, "protocol"),
        ({"name": "https", "protocol": "tcp", "ports": ["443"]}, "name"),
    ]
    filter_cases = [
        ({"protocol": "udp"}, 1),
        ({"protocol": ["tcp", "udp"]}, 3),
        ({"search": "https"}, 1),
    ]

    def make_objects(self):
        return [
            make_service("https", ports=["443"]),
            make_service("dns", "udp", ["53"]),
            make_service("ssh", ports=["22"]),
        ]

    def test_port_70000_names_the_port(self, api, objects):
        response = api.post(
            self.list_url(), {"name": "x", "protocol": "udp", "ports": ["70000"]}, format="json"
        )
        assert response.data["ports"] == ["port 70000 is out of range (1-65535)"]


class TestServiceGroupAPI(APIViewTestCases.APIViewTestCase):
    model = ServiceGroup
    basename = "servicegroup"
    create_data = [
        {"name": "web", "members": ["https", "http"]},
        {"name": "everything", "members": ["infra", "https"], "description": "nested"},
    ]
    update_data = {"members": ["http"]}
    invalid_data = [
        ({"name": "self", "members": ["self"]}, "members"),
        ({"name": "unknown", "members": ["gopher"]}, "members"),
    ]
    filter_cases = [({"member": "dns"}, 1), ({"member": "infra"}, 1), ({"member": "https"}, 1)]

    def make_objects(self):
        for name, proto, port in (
            ("https", "tcp", "443"),
            ("http", "tcp", "80"),
            ("dns", "udp", "53"),
        ):
            make_service(name, proto, [port])
        groups = []
        for name, members in (("infra", ["dns"]), ("all", ["infra", "https"]), ("spare", [])):
            group = services.object_save(ServiceGroup(name=name))
            services.service_group_set_members(group=group, members=members)
            groups.append(group)
        return groups


class TestRuleSetAPI(APIViewTestCases.APIViewTestCase):
    model = RuleSet
    basename = "ruleset"
    create_data = [
        {"name": "web-baseline", "description": "what every web server allows"},
        {
            "name": "strict",
            "requires_approval": True,
            "assertions": [
                {
                    "chain": "input",
                    "protocol": "tcp",
                    "source": "198.18.0.5",
                    "destination": "198.18.1.10",
                    "dport": 443,
                    "expect": "accept",
                }
            ],
        },
    ]
    update_data = {"description": "changed"}
    invalid_data = [
        ({"name": "base"}, "name"),
        ({"name": "-bad"}, "name"),
        ({"name": "x", "assertions": "nope"}, "assertions"),
    ]
    filter_cases = [({"name": "base"}, 1), ({"search": "web"}, 1)]

    def make_objects(self):
        base = services.object_save(RuleSet(name="base"))
        services.rule_create(ruleset=base, data={"comment": "one"})
        return [
            base,
            services.object_save(RuleSet(name="web")),
            services.object_save(RuleSet(name="spare")),
        ]

    def test_counts(self, viewer_api, objects):
        data = viewer_api.get(self.detail_url(objects[0])).data
        assert (data["rule_count"], data["nat_rule_count"]) == (1, 0)


class TestRuleAPI(APIViewTestCases.APIViewTestCase):
    model = Rule
    basename = "rule"
    update_data = {
        "action": "drop",
        "comment": "changed",
        "sources": ["198.18.7.0/24"],
        "services": [],
    }
    filter_cases = [
        ({"action": "drop"}, 1),
        ({"address": "office"}, 1),
        ({"service": "https"}, 1),
        ({"chain": ["input", "forward"]}, 3),
        ({"search": "second"}, 1),
        ({"ruleset_name": "rs"}, 3),
    ]

    def make_objects(self):
        make_address("office", "198.18.0.0/24")
        make_address("v6host", "2001:2::1")
        make_service("https", ports=["443"])
        rs = services.object_save(RuleSet(name="rs"))
        return [
            services.rule_create(
                ruleset=rs, data={"sources": ["office"], "services": ["https"], "comment": "first"}
            ),
            services.rule_create(ruleset=rs, data={"action": "drop", "comment": "second"}),
            services.rule_create(
                ruleset=rs, data={"chain": "forward", "protocol": "udp", "dports": ["53"]}
            ),
        ]

    def get_create_data(self, objects):
        rs = objects[0].ruleset_id
        return [
            {
                "ruleset": rs,
                "sources": ["office", "198.18.9.1"],
                "destinations": ["198.18.1.0/24"],
                "services": ["https"],
                "action": "accept",
                "comment": "office to web",
                "states": ["new"],
            },
            {
                "ruleset": rs,
                "chain": "output",
                "action": "reject",
                "protocol": "tcp",
                "dports": ["25"],
                "out_interface": "eth0",
                "log": True,
                "log_prefix": "smtp ",
                "rate_limit": "10/second",
                "burst": 5,
            },
            {
                "ruleset": rs,
                "destinations": ["v6host"],
                "protocol": "icmpv6",
                "icmp_type": "echo-request",
                "enabled": False,
                "expires_at": "2030-01-01T00:00:00Z",
            },
        ]

    def get_invalid_data(self, objects):
        rs = objects[0].ruleset_id
        return [
            ({"ruleset": rs, "protocol": "tcp", "dports": ["70000"]}, "dports"),
            (
                {"ruleset": rs, "sources": ["198.18.0.0/24"], "destinations": ["v6host"]},
                "destinations",
            ),
            ({"ruleset": rs, "sources": ["198.18.0.0/33"]}, "sources"),
            ({"ruleset": rs, "sources": ["nobody"]}, "sources"),
            ({"ruleset": rs, "services": ["https"], "protocol": "tcp"}, "services"),
            ({"ruleset": rs, "chain": "sideways"}, "chain"),
            ({"ruleset": rs, "chain": "output", "in_interface": "eth0"}, "in_interface"),
            ({"ruleset": rs, "states": ["bogus"]}, "states"),
            ({"action": "drop"}, "ruleset"),
            # what a dataplane would not keep exactly: nft variable, control character,
            # 30 bytes of UTF-8 in 15 characters (iptables would cut it mid-character)
            ({"ruleset": rs, "log": True, "log_prefix": "cost $5 "}, "log_prefix"),
            ({"ruleset": rs, "log": True, "log_prefix": "a\tb"}, "log_prefix"),
            ({"ruleset": rs, "log": True, "log_prefix": "é" * 15}, "log_prefix"),
            ({"ruleset": rs, "log": True, "log_prefix": "a\u2029b"}, "log_prefix"),  # splits lines
        ]

    def test_ipv6_in_an_ipv4_rule_names_destinations(self, api, objects):
        data = {
            "ruleset": objects[0].ruleset_id,
            "sources": ["198.18.0.0/24"],
            "destinations": ["2001:2::1"],
        }
        response = api.post(self.list_url(), data, format="json")
        assert response.status_code == 400
        assert "IPv4 only" in response.data["destinations"][0]

    def test_log_prefix_with_a_backslash_is_kept_exactly(self, api, objects):
        """Carried by every dataplane (iptables escapes it, nft takes it verbatim): stored
        and compiled as written; the byte limit and its message are field-level."""
        prefix = "C:\\drop 'é' #1: "
        data = {"ruleset": objects[0].ruleset_id, "log": True, "log_prefix": prefix}
        response = api.post(self.list_url(), data, format="json")
        assert response.status_code == 201, response.data
        assert Rule.objects.get(pk=response.data["id"]).log_prefix == prefix
        long = api.post(self.list_url(), {**data, "log_prefix": "é" * 15}, format="json")
        assert long.status_code == 400 and "29 bytes" in long.data["log_prefix"][0]

    def test_create_at_a_position_inserts(self, api, objects):
        data = {"ruleset": objects[0].ruleset_id, "comment": "top", "position": 1}
        response = api.post(self.list_url(), data, format="json")
        assert response.data["position"] == 1
        assert list(Rule.objects.order_by("position").values_list("comment", flat=True)) == [
            "top",
            "first",
            "second",
            "",
        ]

    def test_a_rule_cannot_change_rule_set(self, api, objects):
        other = services.object_save(RuleSet(name="other"))
        response = api.patch(self.detail_url(objects[0]), {"ruleset": other.pk}, format="json")
        assert response.status_code == 400 and "ruleset" in response.data

    def test_move(self, api, objects):
        response = api.post(
            reverse("rule-move", kwargs={"pk": objects[2].pk}), {"position": 1}, format="json"
        )
        assert response.status_code == 200, response.data
        assert response.data["position"] == 1
        order = list(Rule.objects.order_by("position").values_list("pk", flat=True))
        assert order == [objects[2].pk, objects[0].pk, objects[1].pk]

    def test_move_needs_a_positive_position(self, api, objects):
        response = api.post(
            reverse("rule-move", kwargs={"pk": objects[2].pk}), {"position": 0}, format="json"
        )
        assert response.status_code == 400 and "position" in response.data

    def test_move_is_refused_for_a_viewer(self, viewer_api, objects):
        url = reverse("rule-move", kwargs={"pk": objects[2].pk})
        assert viewer_api.post(url, {"position": 1}, format="json").status_code == 403

    def test_delete_renumbers(self, api, objects):
        api.delete(self.detail_url(objects[0]))
        assert list(Rule.objects.order_by("position").values_list("position", flat=True)) == [1, 2]

    def test_nested_list_is_in_order(self, viewer_api, objects):
        services.rule_move(rule=objects[2], position=1)
        response = viewer_api.get(reverse("ruleset-rules", kwargs={"pk": objects[0].ruleset_id}))
        assert response.status_code == 200
        assert [r["id"] for r in response.data["results"]] == [
            objects[2].pk,
            objects[0].pk,
            objects[1].pk,
        ]
        assert response.data["results"][1]["sources"] == ["office"]
        assert response.data["results"][1]["services"] == ["https"]


class TestNatRuleAPI(APIViewTestCases.APIViewTestCase):
    model = NatRule
    basename = "natrule"
    update_data = {"comment": "changed", "to": "198.18.1.11:8080"}
    filter_cases = [({"type": "dnat"}, 1), ({"type": ["snat", "masquerade"]}, 2)]

    def make_objects(self):
        rs = services.object_save(RuleSet(name="rs"))
        return [
            services.object_save(
                NatRule(
                    ruleset=rs,
                    position=0,
                    type="dnat",
                    in_interface="eth0",
                    protocol="tcp",
                    dports=["80"],
                    to="198.18.1.10:8080",
                )
            ),
            services.object_save(
                NatRule(ruleset=rs, position=1, type="masquerade", out_interface="eth0")
            ),
            services.object_save(
                NatRule(ruleset=rs, position=2, type="snat", out_interface="eth1", to="198.18.0.1")
            ),
        ]

    def get_create_data(self, objects):
        rs = objects[0].ruleset_id
        return [
            {
                "ruleset": rs,
                "type": "masquerade",
                "out_interface": "eth0",
                "sources": ["198.18.0.0/24"],
            },
            {
                "ruleset": rs,
                "type": "dnat",
                "in_interface": "eth0",
                "protocol": "tcp",
                "dports": ["443"],
                "to": "[2001:2::1]:8443",
            },
        ]

    def get_invalid_data(self, objects):
        rs = objects[0].ruleset_id
        return [
            ({"ruleset": rs, "type": "dnat", "in_interface": "eth0"}, "to"),
            ({"ruleset": rs, "type": "masquerade", "to": "198.18.0.1"}, "to"),
            (
                {
                    "ruleset": rs,
                    "type": "dnat",
                    "protocol": "tcp",
                    "dports": ["70000"],
                    "to": "198.18.0.1",
                },
                "dports",
            ),
        ]

    def test_new_nat_rules_go_last(self, api, objects):
        data = {"ruleset": objects[0].ruleset_id, "type": "masquerade", "out_interface": "eth2"}
        assert api.post(self.list_url(), data, format="json").data["position"] == 3


# --- bulk ----------------------------------------------------------------------------------


@pytest.fixture
def ruleset(db) -> RuleSet:
    make_address("office", "198.18.0.0/24")
    make_address("v6host", "2001:2::1")
    make_service("https", ports=["443"])
    return services.object_save(RuleSet(name="big"))


def bulk_url(ruleset: RuleSet) -> str:
    return reverse("ruleset-rules-bulk", kwargs={"pk": ruleset.pk})


def ordered(ruleset: RuleSet) -> list[str]:
    return list(ruleset.rules.order_by("position").values_list("comment", flat=True))


def test_bulk_create_then_read_back_paginated(api, ruleset):
    items = [
        {"sources": ["office"], "services": ["https"], "comment": f"r{i}"}
        if i % 2
        else {
            "destinations": [f"198.18.{i % 250}.1"],
            "protocol": "udp",
            "dports": ["53"],
            "comment": f"r{i}",
        }
        for i in range(500)
    ]
    response = api.post(bulk_url(ruleset), {"create": items}, format="json")
    assert response.status_code == 200, response.data
    assert response.data["count"] == 500 and len(response.data["created"]) == 500
    assert ordered(ruleset) == [f"r{i}" for i in range(500)]
    page = api.get(
        reverse("ruleset-rules", kwargs={"pk": ruleset.pk}), {"page": 2, "page_size": 100}
    )
    assert page.data["count"] == 500
    assert [r["comment"] for r in page.data["results"]] == [f"r{i}" for i in range(100, 200)]
    assert page.data["results"][1]["sources"] == ["office"] and page.data["results"][1][
        "services"
    ] == ["https"]
    assert [r["position"] for r in page.data["results"]] == list(range(101, 201))


def test_bulk_is_all_or_nothing_with_per_item_errors(api, ruleset):
    keep = services.rule_create(ruleset=ruleset, data={"comment": "keep"})
    gone = services.rule_create(ruleset=ruleset, data={"comment": "gone"})
    items = [{"comment": "fine"}] * 17 + [
        {"protocol": "tcp", "dports": ["70000"]},
        {"sources": ["198.18.0.0/24"], "destinations": ["v6host"]},
    ]
    body = {
        "create": items,
        "delete": [gone.pk, 999999],
        "update": [{"id": keep.pk, "chain": "nowhere"}],
    }
    response = api.post(bulk_url(ruleset), body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert errors["create"]["17"]["dports"] == ["port 70000 is out of range (1-65535)"]
    assert "IPv4 only" in errors["create"]["18"]["destinations"][0]
    assert "16" not in errors["create"]
    assert "999999" in errors["delete"]["1"][0] and "0" not in errors["delete"]
    assert "chain" in errors["update"]["0"]
    assert ordered(ruleset) == ["keep", "gone"]
    assert Rule.objects.get(pk=keep.pk).chain == "input"


def test_bulk_update_delete_order_and_insert(api, ruleset):
    rules = [services.rule_create(ruleset=ruleset, data={"comment": c}) for c in "abcd"]
    body = {
        "delete": [rules[1].pk],
        "update": [
            {"id": rules[0].pk, "comment": "A", "sources": ["office"]},
            {"id": str(rules[3].uuid), "log": True},
        ],
        "order": [rules[3].pk, rules[2].pk, rules[0].pk],
        "create": [{"comment": "end"}, {"comment": "top", "position": 1}],
    }
    response = api.post(bulk_url(ruleset), body, format="json")
    assert response.status_code == 200, response.data
    assert response.data["deleted"] == [rules[1].pk]
    assert sorted(response.data["updated"]) == sorted([rules[0].pk, rules[3].pk])
    assert ordered(ruleset) == ["top", "d", "c", "A", "end"]
    assert list(ruleset.rules.order_by("position").values_list("position", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
    ]
    rules[0].refresh_from_db()
    assert [a.ref for a in rules[0].addresses.all()] == ["office"]
    assert Rule.objects.get(pk=rules[3].pk).log is True


def test_bulk_order_must_name_every_remaining_rule(api, ruleset):
    rules = [services.rule_create(ruleset=ruleset, data={"comment": c}) for c in "abc"]
    response = api.post(bulk_url(ruleset), {"order": [rules[2].pk, rules[0].pk]}, format="json")
    assert response.status_code == 400
    assert f"leaves out rules {rules[1].pk}" in response.data["order"][0]
    assert ordered(ruleset) == ["a", "b", "c"]


def test_bulk_rejects_rules_of_another_rule_set(api, ruleset):
    other = services.object_save(RuleSet(name="other"))
    foreign = services.rule_create(ruleset=other, data={"comment": "x"})
    response = api.post(bulk_url(ruleset), {"delete": [foreign.pk]}, format="json")
    assert (
        response.status_code == 400
        and "not a rule of rule set big" in response.data["delete"]["0"][0]
    )
    assert Rule.objects.filter(pk=foreign.pk).exists()


def test_bulk_shape_errors_are_per_item(api, ruleset):
    response = api.post(
        bulk_url(ruleset), {"create": [{"comment": "ok"}, "not an object"]}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["create"]) == ["1"]


def test_bulk_is_refused_for_a_viewer(viewer_api, ruleset):
    response = viewer_api.post(bulk_url(ruleset), {"create": [{"comment": "x"}]}, format="json")
    assert response.status_code == 403
    assert not ruleset.rules.exists()


def test_a_page_of_100_rules_costs_a_handful_of_queries(viewer_api, ruleset):
    items = [
        {
            "sources": ["office", "198.18.3.3"],
            "destinations": ["v6host"] if i % 2 else [],
            "services": ["https"],
            "comment": str(i),
        }
        for i in range(150)
    ]
    for item in items:
        if item["destinations"]:
            item["sources"] = ["2001:2::/64"]
    services.rules_bulk(ruleset=ruleset, create=items)
    with CaptureQueriesContext(connection) as queries:
        response = viewer_api.get(reverse("rule-list"), {"ruleset": ruleset.pk, "page_size": 100})
    assert len(response.data["results"]) == 100
    assert len(queries) <= 10, [q["sql"] for q in queries]
