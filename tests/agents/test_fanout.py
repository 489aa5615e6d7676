"""Fleet fan-out: devices with the same compiled policy share one compile, and a batch
task pushes several devices, each to its own end, whatever happens to the others."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from agents import enqueue, services
from agents.device_policy import COMPILES, Target, deployment_policy, device_policy
from agents.models import DeviceDeployment
from compiler import compile_device
from rules import services as rules_services
from rules.compile_options import compile_options
from rules.models import Device
from tests.agents.helpers import free_port, run_all
from tests.support.deploy import make_device, make_policy

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


def _device(name: str, agent, **fields) -> Device:
    return make_device(name, address=agent.server.server_address[0], agent=agent, **fields)


@pytest.fixture(autouse=True)
def sent(monkeypatch) -> list[tuple[str, tuple, dict]]:
    """The tasks sent to the broker: (name, args, options). Every test here: a retry sent
    for real would open this process's broker connection on the default broker."""
    calls: list[tuple[str, tuple, dict]] = []
    fake = SimpleNamespace(send_task=lambda name, args, **kw: calls.append((name, args, kw)))
    monkeypatch.setattr(enqueue, "current_app", fake)
    return calls


def _direct(dd: DeviceDeployment):
    """The device's bundle compiled on its own, as of its compiling step (no sharing)."""
    policy = device_policy(dd.device, Target.DEPLOYMENT, deployment=dd.deployment)
    return compile_device(
        deployment_policy(dd.deployment), dd.device.name, options=policy.options, now=dd.started_at
    )


def test_identical_policies_compile_once_and_each_device_gets_its_own_bundle(agents):
    _, group = make_policy("web", ports=(80, 443))
    devices = [_device(f"web-{i}", a, group=group) for i, a in enumerate(agents)]
    deployment = services.deploy_create(devices=[d.pk for d in devices])
    before = COMPILES.copy()
    assert run_all(deployment) == ["confirmed"] * 3
    assert COMPILES["compiled"] - before["compiled"] == 1
    assert COMPILES["shared"] - before["shared"] == 2
    for dd, agent in zip(deployment.device_deployments.order_by("id"), agents, strict=True):
        direct = _direct(dd)
        # the shared compile is the device's own bundle: its name, its hash, the same texts
        assert dd.bundle_hash == direct.hash == agent.engine.status()["applied"]["hash"]
        assert device_policy(dd.device, Target.DEPLOYED).compile().hash == dd.bundle_hash
    hashes = set(deployment.device_deployments.values_list("bundle_hash", flat=True))
    assert len(hashes) == 3  # the name is part of the bundle (and of what the agent checks)


def test_devices_with_different_policies_get_their_own_compile(agents):
    _, web = make_policy("web", ports=(80,))
    _, db = make_policy("db", ports=(5432,))
    _device("web-0", agents[0], group=web)
    _device("db-0", agents[1], group=db)
    # same group as web-0, but managed from elsewhere: its management step differs
    _device("web-1", agents[2], group=web, management_sources=["198.19.7.0/24"])
    deployment = services.deploy_create(devices=list(Device.objects.values_list("pk", flat=True)))
    before = COMPILES.copy()
    assert run_all(deployment) == ["confirmed"] * 3
    assert COMPILES["compiled"] - before["compiled"] == 3
    texts = {}
    for dd in deployment.device_deployments.select_related("device"):
        direct = _direct(dd)
        assert dd.bundle_hash == direct.hash
        texts[dd.device.name] = direct.iptables_v4
    assert "5432" in texts["db-0"] and "5432" not in texts["web-0"]
    assert "198.19.7.0/24" in texts["web-1"] and "198.19.7.0/24" not in texts["web-0"]


def test_a_rule_expiring_between_two_compiles_splits_the_shared_bundle():
    ruleset, group = make_policy("web", ports=(80,))
    expires = timezone.now() + timedelta(hours=1)
    rules_services.rule_create(
        ruleset=ruleset,
        data={
            "chain": "input",
            "action": "accept",
            "protocol": "tcp",
            "dports": ["8080"],
            "sources": ["198.18.0.0/15"],
            "expires_at": expires.isoformat(),
        },
    )
    a, b = make_device("web-a", group=group), make_device("web-b", group=group)
    deployment = services.deploy_create(devices=[a.pk, b.pk])
    doc = deployment_policy(deployment)
    moments = {
        "before": expires - timedelta(minutes=30),
        "just before": expires - timedelta(seconds=1),
        "after": expires + timedelta(seconds=1),
    }
    before = COMPILES.copy()
    for device in (a, b):
        for now in moments.values():
            policy = device_policy(device, Target.DEPLOYMENT, deployment=deployment, now=now)
            shared = policy.compile()
            direct = compile_device(doc, device.name, options=compile_options(device), now=now)
            assert shared.to_dict(rules=False) == direct.to_dict(rules=False)
            assert ("8080" in shared.iptables_v4) is (now < expires)
    # one compile while the rule is live (any moment before its expiry), one after it
    assert COMPILES["compiled"] - before["compiled"] == 2
    assert COMPILES["shared"] - before["shared"] == 4


def test_batch_with_failing_agents_finishes_the_others_and_records_each(agents, sent):
    _, group = make_policy("web", ports=(80,))
    good = [_device(f"web-{i}", a, group=group) for i, a in enumerate(agents[:2])]
    # answers with another identity than the one enrolled: a failure, never retried
    impostor = _device("web-impostor", agents[2], group=group, agent_cert_fingerprint="ab" * 32)
    down = make_device(  # enrolled, but nothing listens where it is
        "web-down",
        group=group,
        port=free_port(),
        agent_public_key=agents[0].public_key,
        agent_cert_fingerprint=agents[0].fingerprint,
    )
    deployment = services.deploy_create(devices=[d.pk for d in (*good, impostor, down)])
    ids = {dd.device.name: dd.pk for dd in deployment.device_deployments.select_related("device")}
    sent.clear()
    results = services.device_deployment_batch(device_deployment_ids=list(ids.values()), threads=1)
    by_name = {name: results[pk] for name, pk in ids.items()}
    assert by_name == {
        "web-0": "confirmed",
        "web-1": "confirmed",
        "web-impostor": "failed",
        "web-down": "retrying",
    }
    states = dict(
        DeviceDeployment.objects.filter(deployment=deployment).values_list("device__name", "state")
    )
    assert states == {
        "web-0": "confirmed",
        "web-1": "confirmed",
        "web-impostor": "failed",
        "web-down": "pushing",  # its attempt noted; sent again on its own
    }
    impostor_dd = DeviceDeployment.objects.get(pk=ids["web-impostor"])
    assert "identity" in impostor_dd.transitions[-1]["note"]
    down_dd = DeviceDeployment.objects.get(pk=ids["web-down"])
    assert down_dd.attempts == 1 and down_dd.error.startswith("attempt 1:")
    [(name, args, options)] = sent
    assert name == enqueue.DEPLOY_DEVICE and args == (ids["web-down"],)
    assert options["countdown"] > 0
    # the retry as the worker runs it, until the attempts are used up: failed, with why
    with pytest.raises(services.RetryLater):
        services.device_deployment_run(device_deployment_id=ids["web-down"])  # attempt 2
    assert services.device_deployment_run(device_deployment_id=ids["web-down"]) == "failed"
    down_dd.refresh_from_db()
    assert down_dd.state == "failed" and "unreachable" in down_dd.error
    # a redelivered batch (its worker died) pushes nothing twice
    applied = [a.engine.status()["applied"]["version"] for a in agents[:2]]
    again = services.device_deployment_batch(device_deployment_ids=list(ids.values()), threads=1)
    assert again[ids["web-0"]] == "confirmed" and again[ids["web-down"]] == "failed"
    assert [a.engine.status()["applied"]["version"] for a in agents[:2]] == applied


def test_waves_are_sent_in_batches_and_a_lone_device_on_its_own(sent, settings):
    settings.RAMPART = {**settings.RAMPART, "DEPLOY_BATCH": 2}
    enqueue.device_deployments([1, 2, 3, 4, 5])
    assert [(name, args) for name, args, _ in sent] == [
        (enqueue.DEPLOY_BATCH, ([1, 2],)),
        (enqueue.DEPLOY_BATCH, ([3, 4],)),
        (enqueue.DEPLOY_DEVICE, (5,)),
    ]


@pytest.mark.django_db(transaction=True)
def test_batch_pushes_concurrently_on_its_threads(agents):
    _, group = make_policy("web", ports=(80,))
    devices = [_device(f"web-{i}", a, group=group) for i, a in enumerate(agents)]
    deployment = services.deploy_create(devices=[d.pk for d in devices])
    ids = list(deployment.device_deployments.values_list("pk", flat=True))
    results = services.device_deployment_batch(device_deployment_ids=ids, threads=3)
    assert sorted(results.values()) == ["confirmed"] * 3
    for dd, agent in zip(deployment.device_deployments.order_by("id"), agents, strict=True):
        assert agent.engine.status()["applied"]["hash"] == dd.bundle_hash
        assert agent.engine.status()["applied"]["version"] == dd.version
    deployment.refresh_from_db()
    assert deployment.status == "succeeded"
