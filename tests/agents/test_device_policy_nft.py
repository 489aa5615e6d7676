"""A device whose agent reports the native nftables dataplane gets bundles carrying the
`nft` script it applies; every other device gets the same bundle without it."""

from __future__ import annotations

import pytest

from agents.device_policy import Target, device_policy
from compiler import with_nft
from rules import services as rule_services
from rules.compile_options import NFT_SET_TYPES, compile_options
from rules.models import Device, DeviceRuleSet, RuleSet

pytestmark = pytest.mark.django_db


def _device(name: str, facts: dict) -> Device:
    device = Device.objects.create(name=name, address="198.18.0.2", facts=facts)
    ruleset = RuleSet.objects.get_or_create(name="edge")[0]
    DeviceRuleSet.objects.create(device=device, ruleset=ruleset)
    return device


def test_nft_native_device_gets_the_nft_script():
    rule_services.object_save(RuleSet(name="edge"))
    native = _device("fw-nft", {"backend": "nft-native"})
    classic = _device("fw-ipt", {"backend": "nft"})
    got = device_policy(native, Target.CANDIDATE).compile()
    plain = device_policy(classic, Target.CANDIDATE).compile()
    assert got.nft.startswith("table inet rampart\ndelete table inet rampart\n")
    assert "nft" in got.to_dict(rules=False) and not plain.nft
    assert "nft" not in plain.to_dict(rules=False)
    # the same policy otherwise: the iptables texts are shared, the hash covers the script
    assert got.iptables_v4 == plain.iptables_v4 and got.hash != plain.hash
    assert with_nft(got) is got


def test_nft_native_device_is_set_compiled_with_every_shape(settings):
    native = Device(name="fw-nft", facts={"backend": "nft-native"})
    options = compile_options(native)
    assert options.set_compile and options.set_types == NFT_SET_TYPES
    assert options.set_range_max > 65535  # a port range is one interval element
    assert {"hash:net,net", "hash:net,port,net"} <= NFT_SET_TYPES  # not in every ipset
    settings.RAMPART = {**settings.RAMPART, "SET_COMPILE": False}
    assert compile_options(native).set_compile is False
