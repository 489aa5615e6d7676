"""Set compilation follows the device's facts (the ipset types its agent probed), and a
deployment keeps the set types it was compiled with."""

from __future__ import annotations

import pytest

from agents.device_policy import device_settings, recorded_options
from rules import importer
from rules.compile_options import compile_options
from rules.models import Device
from tests.compiler import cases

pytestmark = pytest.mark.django_db

TYPES = "hash:net hash:net,port hash:ip,port,net hash:ip,port,ip"


@pytest.fixture
def device():
    importer.import_document(cases.example())
    return Device.objects.get(name="web-1")


def test_agent_facts_turn_set_compilation_on(device, settings):
    assert compile_options(device).set_compile is False  # an agent that reports no types
    assert compile_options(None).set_compile is False
    device.facts = {"backend": "legacy", "ipset_types": TYPES}
    options = compile_options(device)
    assert options.set_compile and options.set_types == frozenset(TYPES.split())
    assert options.set_range_max == 64  # ipset: a range is one element per port
    device.facts = {"backend": "legacy", "ipset_types": ""}  # no ipset on the host
    assert compile_options(device).set_compile is False
    device.facts = {"ipset_types": TYPES}
    settings.RAMPART = {**settings.RAMPART, "SET_COMPILE": False}
    assert compile_options(device).set_compile is False


def test_a_deployment_keeps_its_set_types(device):
    device.facts = {"ipset_types": TYPES}
    recorded = device_settings(cases.example(), device)
    assert recorded["set_types"] == sorted(TYPES.split())
    device.facts = {}  # the agent changed since (or was replaced by an older one)
    options = recorded_options(compile_options(device), recorded)
    assert options.set_compile and options.set_types == frozenset(TYPES.split())
    # a deployment compiled linear stays linear, one from before set compilation too
    device.facts = {"ipset_types": TYPES}
    assert not recorded_options(compile_options(device), {"set_types": None}).set_compile
    assert recorded_options(compile_options(device), {}).set_compile
    # a deployment to a native nftables device keeps its wide ranges as elements
    native = device_settings(cases.example(), Device(name="web-1", facts={"backend": "nft-native"}))
    assert native["set_range_max"] > 65535
    assert recorded_options(compile_options(device), native).set_range_max > 65535
