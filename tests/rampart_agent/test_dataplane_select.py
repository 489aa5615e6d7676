"""`auto`, the agent's default dataplane (select.py): one fake host per kind, the
overrides, and what the agent refuses when its records and the dataplane disagree."""

from __future__ import annotations

import argparse
import json

import pytest

from rampart_agent.cli import UserError, _dataplane, _held
from rampart_agent.dataplane import IptablesDataplane, NftDataplane, choose, open_dataplane
from rampart_agent.dataplane.select import HELD_IPTABLES, HELD_NATIVE
from rampart_agent.engine import Engine
from rampart_agent.errors import AgentError
from rampart_agent.runner import FakeRunner, Result
from rampart_agent.sample import make_bundle
from rampart_agent.state import CONFIRMED_FILE, LIVE_FILE, StateDir
from tests.rampart_agent.test_dataplane_save import SAVE

NFT_V = "iptables v1.8.9 (nf_tables)"
LEGACY_V = "iptables v1.8.9 (legacy)"


def host(*, iptables: str | None, nft: str = "ok", legacy_rules: str = "") -> FakeRunner:
    """A host: `iptables -V` says `iptables` (None: no iptables tools at all); `nft` is
    'ok', 'missing' (no tool) or 'no-kernel' (no nf_tables); `legacy_rules`: what
    iptables-legacy-save prints."""

    def handler(argv: list[str], inp: str | None) -> Result:
        if argv[0] == "nft":
            if nft == "missing":
                raise FileNotFoundError(2, "No such file or directory", "nft")
            if nft == "no-kernel":
                return Result(1, "", "Error: Could not process rule: Protocol not supported")
            return Result(0, "table ip filter\n")
        if argv[0].startswith("iptables") and iptables is None:
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        if argv == ["iptables", "-V"]:
            return Result(0, f"{iptables}\n")
        if argv[0] == "iptables-legacy-save":
            return Result(0, legacy_rules)
        return Result(0, "")

    return FakeRunner(handler=handler)


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv("RAMPART_AGENT_BACKEND", raising=False)


@pytest.mark.parametrize(
    "runner,kind",
    [
        (host(iptables=NFT_V), "nft-native"),  # nftables host (Debian 11+, RHEL 9 ...)
        (host(iptables=None), "nft-native"),  # nftables only, no iptables installed
        (host(iptables=LEGACY_V), "legacy"),  # iptables is the legacy variant
        (host(iptables=NFT_V, legacy_rules=SAVE), "legacy"),  # Docker on legacy tables
        (host(iptables=NFT_V, nft="missing"), "nft"),  # no nft tool: iptables-nft
        (host(iptables=LEGACY_V, nft="missing"), "legacy"),
        (host(iptables=NFT_V, nft="no-kernel"), "nft"),  # nft refused: iptables as before
    ],
    ids=["nft", "no-iptables", "legacy", "legacy-rules", "no-nft", "legacy-no-nft", "no-kernel"],
)
def test_auto_follows_the_host(runner, kind):
    assert choose(runner).kind == kind


def test_an_agent_stays_where_its_confirmed_bundle_can_be_restored():
    nft_host = host(iptables=NFT_V)
    assert choose(nft_host, HELD_IPTABLES).kind == "nft"  # iptables-nft, as before
    assert choose(host(iptables=LEGACY_V), HELD_NATIVE).kind == "nft-native"
    # a native bundle whose host lost nft: the iptables backend (its texts are there too)
    assert choose(host(iptables=LEGACY_V, nft="missing"), HELD_NATIVE).kind == "legacy"


def test_overrides(monkeypatch):
    nft_host = host(iptables=NFT_V)
    assert isinstance(open_dataplane("auto", nft_host), NftDataplane)
    dp = open_dataplane("iptables", nft_host)  # explicit iptables: never native
    assert isinstance(dp, IptablesDataplane) and dp.backend == "nft"
    assert open_dataplane("legacy", nft_host).backend == "legacy"
    monkeypatch.setenv("RAMPART_AGENT_BACKEND", "legacy")
    calls = len(nft_host.calls)
    assert open_dataplane("auto", nft_host).backend == "legacy"
    assert len(nft_host.calls) == calls  # nothing probed
    monkeypatch.setenv("RAMPART_AGENT_BACKEND", "nft-native")
    assert isinstance(open_dataplane("auto", host(iptables=LEGACY_V)), NftDataplane)
    monkeypatch.setenv("RAMPART_AGENT_BACKEND", "nftables")
    with pytest.raises(ValueError, match="RAMPART_AGENT_BACKEND='nftables'"):
        choose(nft_host)


def confirmed_state(tmp_path, bundle: dict) -> StateDir:
    """A state directory whose confirmed bundle is `bundle`."""
    state = StateDir(tmp_path / "state")
    state.ensure()
    path = state.bundle_file("abc")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bundle))
    state.write_json(CONFIRMED_FILE, {"hash": "abc", "version": 3})
    return state


def test_held_reads_the_confirmed_bundle(tmp_path):
    assert _held(StateDir(tmp_path / "empty")) is None
    plain = make_bundle()
    assert _held(confirmed_state(tmp_path / "a", plain)) == HELD_IPTABLES
    assert _held(confirmed_state(tmp_path / "b", {**plain, "nft": "table inet rampart"})) == (
        HELD_NATIVE
    )


def test_nft_native_refuses_an_iptables_confirmed_bundle(tmp_path, monkeypatch):
    """It could not restore it at start (and would leave those iptables rules beside its
    table): one line saying what to run instead."""
    state = confirmed_state(tmp_path, make_bundle())
    args = argparse.Namespace(dataplane="nft-native")
    with pytest.raises(UserError, match="compiled for iptables .*--dataplane auto or iptables"):
        _dataplane(args, state)
    monkeypatch.setenv("RAMPART_AGENT_BACKEND", "nft-native")
    with pytest.raises(UserError, match="compiled for iptables"):
        _dataplane(argparse.Namespace(dataplane="auto"), state)


def test_a_native_agent_refuses_a_bundle_without_nft_before_the_kernel(tmp_path):
    runner = host(iptables=NFT_V)
    engine = Engine(StateDir(tmp_path / "s"), NftDataplane(runner))
    with pytest.raises(AgentError) as refused:
        engine.apply({"bundle": make_bundle(), "version": 1, "confirm_timeout": 0})
    assert refused.value.status == 400
    assert "has no nft script" in str(refused.value)
    assert not [argv for argv, _ in runner.calls if argv[:2] == ["nft", "-f"]]
    assert engine.state.read_json(LIVE_FILE) is None  # nothing recorded, version unused
