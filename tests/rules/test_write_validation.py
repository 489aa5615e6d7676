"""What the compiler or the kernel would refuse is refused when written: a 400 naming the
field, and nothing stored. The JSON API takes JSON bodies only."""

from __future__ import annotations

import pytest

from rules import services
from rules.models import AddressGroup, AddressObject, NatRule, Rule, RuleSet

pytestmark = pytest.mark.django_db

RULES, NAT, RULESETS = "/api/v1/rules/", "/api/v1/nat-rules/", "/api/v1/rulesets/"


@pytest.fixture
def ruleset() -> RuleSet:
    return services.object_save(RuleSet(name="rs"))


def refused(response, field: str, model, before: int) -> str:
    """The 400's message for `field`, after checking nothing of `model` was stored."""
    assert response.status_code == 400, response.content
    assert field in response.data, response.data
    assert model.objects.count() == before
    return " ".join(str(m) for m in response.data[field])


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"rate_limit": "50000/second"}, "rate_limit", "at most 10000/second"),
        ({"rate_limit": "600001/minute"}, "rate_limit", "at most 10000/second"),
        ({"rate_limit": "10/second", "burst": 10001}, "burst", "1-10000"),
        ({"rate_limit": "10/second", "burst": 0}, "burst", ""),
        ({"rate_limit": "1/day"}, "rate_limit", "burst of at most 1"),  # iptables' burst 5
        ({"rate_limit": "1/hour", "burst": 38}, "burst", "overflows"),
        ({"in_interface": "eth0123456789ab+"}, "in_interface", "at most 15"),
        ({"in_interface": "averyverylongnam"}, "in_interface", "at most 15"),
        ({"in_interface": "eth/0"}, "in_interface", "invalid interface"),
        ({"in_interface": "eth 0"}, "in_interface", "invalid interface"),
        ({"in_interface": ".."}, "in_interface", "not '.' or '..'"),
        ({"in_interface": "."}, "in_interface", "not '.' or '..'"),
        ({"in_interface": "et+h0"}, "in_interface", "invalid interface"),
        ({"chain": "output", "out_interface": "wg0/1"}, "out_interface", "invalid interface"),
    ],
)
def test_a_rule_the_kernel_would_refuse_is_a_400_naming_the_field(
    api, ruleset, fields, field, words
):
    response = api.post(RULES, {"ruleset": ruleset.pk, "action": "accept", **fields})
    assert words in refused(response, field, Rule, 0)


@pytest.mark.parametrize(
    "fields",
    [
        {"rate_limit": "10000/second", "burst": 10000},
        {"rate_limit": "600000/minute"},
        {"rate_limit": "1/day", "burst": 1},
        {"rate_limit": "1/hour", "burst": 31},
        {"in_interface": "eth0123456789ab"},  # 15 characters
        {"in_interface": "eth0123456789a+"},  # 15 with the wildcard
        {"in_interface": "br-lan.10"},
    ],
)
def test_values_at_the_kernel_bounds_are_accepted(api, ruleset, fields):
    response = api.post(RULES, {"ruleset": ruleset.pk, "action": "accept", **fields})
    assert response.status_code == 201, response.content


def test_an_update_past_the_bounds_is_refused_and_changes_nothing(api, ruleset):
    rule = services.rule_create(ruleset=ruleset, data={"rate_limit": "10/second"})
    response = api.patch(f"{RULES}{rule.pk}/", {"rate_limit": "20000/second"})
    refused(response, "rate_limit", Rule, 1)
    rule.refresh_from_db()
    assert rule.rate_limit == "10/second"


def test_bulk_create_refuses_a_rate_too_fast(api, ruleset):
    response = api.post(
        f"{RULESETS}{ruleset.pk}/rules/bulk/",
        {"create": [{"action": "accept"}, {"action": "accept", "rate_limit": "50000/second"}]},
    )
    assert response.status_code == 400, response.content
    assert "rate_limit" in str(response.data) and not Rule.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "dnat", "sources": ["v6net"], "to": "198.18.1.10:8080"}, "to"),
        ({"type": "dnat", "destinations": ["2001:2::/64"], "to": "198.18.1.10"}, "to"),
        ({"type": "snat", "sources": ["v4net"], "to": "2001:2::1"}, "to"),
        ({"type": "dnat", "sources": ["no-such-address"], "to": "198.18.1.10"}, "sources"),
        ({"type": "dnat", "in_interface": "a/b", "to": "198.18.1.10"}, "in_interface"),
    ],
)
def test_a_nat_rule_the_compiler_would_refuse_is_a_400(api, ruleset, fields, field):
    services.object_save(AddressObject(name="v6net", value="2001:2::/64"))
    services.object_save(AddressObject(name="v4net", value="198.18.0.0/24"))
    data = {"ruleset": ruleset.pk, "protocol": "tcp", **fields}
    response = api.post(NAT, data)
    message = refused(response, field, NatRule, 0)
    if field == "to":
        assert "mixes IPv4 and IPv6" in message


def test_a_nat_rule_through_a_named_group_of_its_family_is_accepted(api, ruleset):
    services.object_save(AddressObject(name="v4net", value="198.18.0.0/24"))
    group = services.object_save(AddressGroup(name="v4s"))
    services.address_group_set_members(group=group, members=["v4net", "198.18.3.1"])
    response = api.post(
        NAT, {"ruleset": ruleset.pk, "type": "dnat", "sources": ["v4s"], "to": "198.18.1.10"}
    )
    assert response.status_code == 201, response.content
    bad = api.post(
        NAT, {"ruleset": ruleset.pk, "type": "dnat", "sources": ["v4s"], "to": "2001:2::1"}
    )
    assert "an IPv6 target for IPv4" in refused(bad, "to", NatRule, 1)


@pytest.mark.parametrize(
    ("assertion", "words"),
    [
        ({"chian": "input", "protocol": "tcp", "source": "198.18.0.5"}, "[0].chian: unknown key"),
        ({"chain": "input", "protocol": "tcp", "expect": "allow"}, "[0].expect"),
        ({"chain": "sideways", "protocol": "tcp", "expect": "accept"}, "[0].chain"),
        ({"chain": "input", "protocol": "tcp", "expect": "drop", "dport": 70000}, "[0].dport"),
        ({"chain": "input", "protocol": "tcp", "expect": "drop", "name": "a b"}, "[0].name"),
    ],
)
def test_an_assertion_the_compiler_would_refuse_is_a_400(api, assertion, words):
    good = {
        "chain": "input",
        "protocol": "tcp",
        "source": "198.18.0.5",
        "destination": "198.18.1.10",
        "dport": 443,
        "expect": "accept",
    }
    bad = {"source": "198.18.0.5", "destination": "198.18.1.10", **assertion}
    response = api.post(RULESETS, {"name": "web", "assertions": [good, bad]})
    message = refused(response, "assertions", RuleSet, 0)
    assert words.replace("[0]", "[1]") in message


def test_an_assertion_edit_that_would_brick_deploys_is_refused(api, ruleset):
    ok = [{"chain": "input", "protocol": "tcp", "source": "198.18.0.5",
           "destination": "198.18.1.10", "expect": "drop"}]  # fmt: skip
    assert api.patch(f"{RULESETS}{ruleset.pk}/", {"assertions": ok}).status_code == 200
    response = api.patch(f"{RULESETS}{ruleset.pk}/", {"assertions": [{**ok[0], "expct": "x"}]})
    refused(response, "assertions", RuleSet, 1)
    ruleset.refresh_from_db()
    assert ruleset.assertions == ok


def test_multipart_on_a_json_route_is_415_and_stores_nothing(api, ruleset):
    response = api.post(
        RULES, {"ruleset": ruleset.pk, "action": "accept", "dports": ["22"]}, format="multipart"
    )
    assert response.status_code == 415
    form = api.post("/api/v1/addresses/", {"name": "a", "value": "198.18.0.1"}, format="multipart")
    assert form.status_code == 415
    urlencoded = api.generic(
        "POST",
        "/api/v1/addresses/",
        "name=a&value=198.18.0.1",
        content_type="application/x-www-form-urlencoded",
    )
    assert urlencoded.status_code == 415
    assert not Rule.objects.exists() and not AddressObject.objects.exists()


def test_a_boolean_left_out_of_json_keeps_its_model_default(api, ruleset):
    response = api.post(
        RULES, {"ruleset": ruleset.pk, "action": "accept", "protocol": "tcp", "dports": ["22"]}
    )
    assert response.status_code == 201, response.content
    assert response.data["enabled"] is True and response.data["log"] is False
    rule = Rule.objects.get()
    assert rule.enabled and rule.dports == ["22"]


def test_the_yaml_import_still_takes_its_own_body(api):
    response = api.post(
        "/api/v1/policy/import/?dry_run=1",
        data="version: 1\naddresses: [{name: a, value: 198.18.0.1}]\n",
        content_type="application/yaml",
    )
    assert response.status_code == 200, response.content
    assert response.json()["created"]["addresses"] == ["a"]
