"""The proof that automation can rely on the schema: a client generated from it by
openapi-python-client imports cleanly and drives a live console over HTTP with a token.

Steps, as a CI job of a user would: write the schema (`manage.py spectacular --file`),
generate the client, import every module of it, then create an address, a rule set and a
rule (enabled by default: a JSON body keeps a missing boolean's default), a device, start a
deployment (no agent runs: it is only created and read back) and read it back.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from django.contrib.auth.models import Group
from knox.models import AuthToken

from agents import enqueue
from core.accounts import roles

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGE = "rampart_generated_client"

# Slow (about 45 s: schema, generation, a live server) but part of `make test`: the proof
# that the schema serves generated clients. openapi-python-client comes with `.[test]`.
pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> None:
    result = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])


@pytest.fixture(scope="module")
def client_package(tmp_path_factory) -> ModuleType:
    work = tmp_path_factory.mktemp("generated")
    schema = work / "schema.yaml"
    _run([sys.executable, "manage.py", "spectacular", "--file", str(schema)], ROOT)
    config = work / "config.yaml"
    config.write_text(
        f"project_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\npost_hooks: []\n"
    )
    _run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(schema),
            "--output-path",
            str(work / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        work,
    )
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(work))


def test_every_generated_module_imports(client_package):
    failures = {}
    for module in pkgutil.walk_packages(client_package.__path__, f"{PACKAGE}."):
        try:
            importlib.import_module(module.name)
        except Exception as exc:  # reported all at once below
            failures[module.name] = repr(exc)
    assert not failures, failures


def test_every_model_resolves_its_names(client_package):
    """Parsing resolves each model's field types; a name the generator failed to define
    raises NameError here (a missing required field is a KeyError, which is fine)."""
    models = importlib.import_module(f"{PACKAGE}.models")
    failures = {}
    for name in models.__all__:
        model = getattr(models, name)
        if not hasattr(model, "from_dict"):
            continue  # an enum
        try:
            model.from_dict({})
        except NameError as exc:
            failures[name] = repr(exc)
        except (KeyError, TypeError, ValueError):
            pass
    assert not failures, failures
    assert len(models.__all__) > 50


@pytest.fixture
def no_broker(monkeypatch) -> list[int]:
    """Device deployments handed to the broker; no worker or agent runs in this test."""
    sent: list[int] = []
    monkeypatch.setattr(
        enqueue, "current_app", SimpleNamespace(send_task=lambda name, args: sent.extend(args))
    )
    return sent


@pytest.fixture
def role_groups(transactional_db) -> None:
    """The role groups come from a data migration, which a transactional test's flush empties."""
    for name in roles.ALL:
        Group.objects.get_or_create(name=name)


def _ok(response, status: int = 201):
    assert response.status_code == status, response.content
    return response.parsed


@pytest.mark.django_db(transaction=True)
def test_a_generated_client_creates_a_rule_and_deploys(
    client_package, live_server, role_groups, users, no_broker
):
    m = importlib.import_module(f"{PACKAGE}.models")
    api = f"{PACKAGE}.api"
    addresses_create = importlib.import_module(f"{api}.addresses.addresses_create")
    rulesets_create = importlib.import_module(f"{api}.rulesets.rulesets_create")
    rules_create = importlib.import_module(f"{api}.rules.rules_create")
    rules_retrieve = importlib.import_module(f"{api}.rules.rules_retrieve")
    devices_create = importlib.import_module(f"{api}.devices.devices_create")
    deployments_create = importlib.import_module(f"{api}.deployments.deployments_create")
    deployments_retrieve = importlib.import_module(f"{api}.deployments.deployments_retrieve")
    _, key = AuthToken.objects.create(user=users["operator"])
    client = client_package.AuthenticatedClient(base_url=live_server.url, token=key, prefix="Token")

    address = _ok(
        addresses_create.sync_detailed(
            client=client, body=m.AddressObjectRequest(name="web", value="198.18.0.10")
        )
    )
    assert address.value == "198.18.0.10"
    ruleset = _ok(rulesets_create.sync_detailed(client=client, body=m.RuleSetRequest(name="edge")))
    rule = _ok(
        rules_create.sync_detailed(
            client=client,
            body=m.RuleRequest(
                ruleset=ruleset.id,
                action=m.VerdictEnum.ACCEPT,
                protocol=m.ProtocolEnum.TCP,
                dports=["443"],
                sources=["web"],
            ),
        )
    )
    assert rule.enabled is True and rule.sources == ["web"]
    assert _ok(rules_retrieve.sync_detailed(client=client, id=rule.id), 200).enabled is True

    device = _ok(
        devices_create.sync_detailed(
            client=client,
            body=m.DeviceRequest(
                name="gw-1",
                address="127.0.0.1",
                rulesets=["edge"],
                management_sources=["198.18.0.0/15"],
            ),
        )
    )
    started = _ok(
        deployments_create.sync_detailed(
            client=client,
            body=m.DeploymentCreateRequest(devices=[device.id], reason="from a generated client"),
            idempotency_key="generated-client-1",
        ),
        202,
    )
    assert started.reason == "from a generated client" and no_broker
    again = _ok(deployments_retrieve.sync_detailed(client=client, id=started.id), 200)
    assert again.id == started.id and again.created_by == "operator"
    assert [d.device_name for d in again.devices] == ["gw-1"]
