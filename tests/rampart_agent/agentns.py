"""Helpers for the real-kernel agent tests: run the agent CLI inside an rpt_ namespace."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from rampart_agent.sample import make_bundle, set_name
from tests.support.netns import Netns

ROOT = str(Path(__file__).resolve().parents[2])  # the repository root
AGENT = [sys.executable, "-m", "rampart_agent.cli"]
BACKENDS = ["legacy", "nft"]


def agent(ns: Netns, backend: str, state: Path, *args: str, check: bool = True, timeout=120):
    """Run `rampart-agent ARGS --state-dir STATE --dataplane BACKEND` inside `ns` (without
    the caller's RAMPART_AGENT_BACKEND: `auto` and `iptables` mean the same everywhere)."""
    return ns.run(
        "env",
        "-u",
        "RAMPART_AGENT_BACKEND",
        f"PYTHONPATH={ROOT}",
        *AGENT,
        *args,
        "--state-dir",
        str(state),
        "--dataplane",
        backend,
        check=check,
        timeout=timeout,
    )


def drift(ns: Netns, backend: str, state: Path) -> dict:
    """The agent's drift report (`status`'s `drift`)."""
    return json.loads(agent(ns, backend, state, "status").stdout)["drift"]


def write(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def limit_lifecycle(
    server: Netns,
    backend: str,
    tmp_path: Path,
    bundle: Callable[[int, Path], str],
    accepted: Callable[[], int],
    native_mark: str,
    after_apply: Callable[[], None] = lambda: None,
) -> None:
    """A rate-limited rule through the agent's life: `bundle(burst, path)` applied with
    burst 3 lets 3 tries through (`accepted`), then no drift once the buckets are spent;
    burst 4 (pending confirm) starts full, no drift; rollback, no drift; on native nft a
    reboot (the table gone) and `restore` give it back without drift, `native_mark` in
    the table's listing."""
    state = tmp_path / "state"
    v1 = bundle(3, tmp_path / "v1.json")
    assert json.loads(agent(server, backend, state, "apply", v1).stdout)["result"] == "applied"
    assert accepted() == 3
    after_apply()
    found = drift(server, backend, state)
    assert not found["drifted"], found["diff"]

    v2 = bundle(4, tmp_path / "v2.json")
    out = agent(server, backend, state, "apply", v2, "--confirm-timeout", "300")
    assert json.loads(out.stdout)["result"] == "applied"
    assert accepted() == 4  # a changed limit starts full
    found = drift(server, backend, state)
    assert not found["drifted"], found["diff"]

    agent(server, backend, state, "rollback")
    found = drift(server, backend, state)
    assert not found["drifted"], found["diff"]
    if backend == "nft-native":  # a reboot: the table is gone, restore loads it again
        server.run("nft", "delete", "table", "inet", "rampart")
        agent(server, backend, state, "restore")
        found = drift(server, backend, state)
        assert not found["drifted"], found["diff"]
        assert native_mark in server.run("nft", "list", "table", "inet", "rampart").stdout


def policy(
    client4: str,
    client6: str,
    ports=(443,),
    extra_web: list[str] | None = None,
    web_chain: str = "RPT-WEB",
    block: bool = False,
) -> dict:
    """A small complete policy for the server side of a host_pair: the client may reach
    `ports` (through a set holding its address), everything else new is dropped; with
    `block`, every packet from the client is dropped (even replies to the server's own
    connections)."""
    s4, s6 = set_name(4, [f"{client4}/32"]), set_name(6, [f"{client6}/128"])

    def family(setname: str, v6: bool) -> dict:
        web = [
            f"-p tcp -m tcp --dport {p} -m set --match-set {setname} src "
            f'-m comment --comment "rpt:0000000{i}-aaaa-4000-8000-000000000000:0000000{i}" -j ACCEPT'
            for i, p in enumerate(ports, 1)
        ] + list(extra_web or [])
        inp = (
            [f"-s {client6 if v6 else client4} -m comment --comment rpt:sys:block -j DROP"]
            if block
            else []
        )
        inp += [
            "-i lo -m comment --comment rpt:sys:loopback -j ACCEPT",
            "-m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment rpt:sys:conntrack -j ACCEPT",
        ]
        if v6:
            inp.append("-p ipv6-icmp -m comment --comment rpt:sys:icmpv6-nd -j ACCEPT")
        inp += [f"-j {web_chain}", "-m comment --comment rpt:sys:default -j DROP"]
        return {
            "filter": {
                "chains": {"RPT-INPUT": inp, web_chain: web},
                "jumps": {"INPUT": ["RPT-INPUT"]},
            }
        }

    return make_bundle(
        v4=family(s4, False),
        v6=family(s6, True),
        sets={s4: [f"{client4}/32"], s6: [f"{client6}/128"]},
    )


def tool(backend: str, v6: bool = False, suffix: str = "") -> str:
    return f"{'ip6' if v6 else 'ip'}tables-{backend}{suffix}"


def snapshot(ns: Netns, backend: str) -> str:
    """Everything the firewall holds (both families, all tables, sets), without counters."""
    out = []
    for v6 in (False, True):
        text = ns.run(tool(backend, v6, "-save")).stdout
        out += [ln for ln in text.splitlines() if not ln.startswith("#")]
    names = sorted(ns.run("ipset", "list", "-n").stdout.split())
    for name in names:
        members = ns.run("ipset", "list", name).stdout.split("Members:")[1].split()
        out.append(f"set {name} {sorted(members)}")
    return "\n".join(out)


def add_foreign_rules(ns: Netns, backend: str) -> None:
    """A Docker-like chain and a rule an admin added by hand."""
    for v6 in (False, True):
        ipt = tool(backend, v6)
        ns.run(ipt, "-N", "DOCKER-USER")
        ns.run(ipt, "-A", "DOCKER-USER", "-j", "RETURN")
        ns.run(ipt, "-A", "FORWARD", "-j", "DOCKER-USER")
        ns.run(ipt, "-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT")
