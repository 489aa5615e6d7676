"""Field-keyed validation of the policy model (shared by API, admin and UI)."""

import pytest
from django.core.exceptions import ValidationError

from rules import services
from rules.models import AddressGroup, AddressObject, Rule, RuleSet, Service

pytestmark = pytest.mark.django_db


def errors_of(fn) -> dict:
    with pytest.raises(ValidationError) as exc:
        fn()
    return exc.value.message_dict


@pytest.mark.parametrize(
    "value, message",
    [
        ("198.18.0.0/33", "prefix length /33"),
        ("198.18.4.99-198.18.4.10", "ends before it starts"),
        ("198.18.0.1/24", "host bits set"),
        ("not-an-address", "invalid address"),
    ],
)
def test_bad_address_values_name_the_field(value, message):
    errors = errors_of(lambda: services.object_save(AddressObject(name="a", value=value)))
    assert message in " ".join(errors["value"])


def test_port_70000_is_refused_on_the_ports_field():
    errors = errors_of(
        lambda: services.object_save(Service(name="s", protocol="udp", ports=["70000"]))
    )
    assert "70000" in errors["ports"][0]


def test_ports_on_icmp_are_refused():
    errors = errors_of(
        lambda: services.object_save(Service(name="s", protocol="icmp", ports=["80"]))
    )
    assert "tcp or udp" in errors["ports"][0]


def test_duplicate_names_are_refused():
    services.object_save(AddressObject(name="web", value="198.18.1.1"))
    errors = errors_of(lambda: services.object_save(AddressObject(name="web", value="198.18.1.2")))
    assert "name" in errors


def test_a_group_cannot_contain_itself_even_indirectly():
    a = services.object_save(AddressGroup(name="a"))
    b = services.object_save(AddressGroup(name="b"))
    services.address_group_set_members(group=a, members=["b"])
    errors = errors_of(lambda: services.address_group_set_members(group=b, members=["a"]))
    assert "cannot contain itself" in errors["members"][0]


def test_ipv6_destination_in_an_ipv4_rule_is_refused():
    rs = services.object_save(RuleSet(name="rs"))
    services.object_save(AddressObject(name="v6host", value="2001:2::1"))
    errors = errors_of(
        lambda: services.rule_create(
            ruleset=rs, data={"sources": ["198.18.0.0/24"], "destinations": ["v6host"]}
        )
    )
    assert "IPv4 only" in errors["destinations"][0]


def test_deleting_an_object_in_use_is_refused_and_names_the_user():
    rs = services.object_save(RuleSet(name="rs"))
    obj = services.object_save(AddressObject(name="office", value="198.18.0.0/24"))
    rule = services.rule_create(ruleset=rs, data={"sources": ["office"]})
    errors = errors_of(lambda: services.object_delete(obj))
    assert str(rule.uuid) in errors["non_field_errors"][0]
    assert AddressObject.objects.filter(name="office").exists()


def test_moving_a_rule_renumbers_atomically():
    rs = services.object_save(RuleSet(name="rs"))
    rules = [services.rule_create(ruleset=rs, data={"comment": str(i)}) for i in range(5)]
    services.rule_move(rule=rules[4], position=1)
    assert list(
        Rule.objects.filter(ruleset=rs).order_by("position").values_list("comment", flat=True)
    ) == ["4", "0", "1", "2", "3"]
    assert list(
        Rule.objects.filter(ruleset=rs).order_by("position").values_list("position", flat=True)
    ) == [1, 2, 3, 4, 5]
