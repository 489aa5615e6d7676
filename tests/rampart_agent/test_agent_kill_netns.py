"""kill -9 of the agent at random points of an apply: old policy or new, never a mix."""

import datetime
import json
import os
import random
import signal
import subprocess
import time

import pytest

from rampart_agent.sample import make_bundle, realistic_rules, set_name
from tests.rampart_agent.agentns import AGENT, ROOT, agent, tool, write
from tests.support.netns import namespace, needs_netns

# the kill -9 campaign runs in `make test-faults` (marker faults), not in `make test`
pytestmark = [*needs_netns, pytest.mark.slow, pytest.mark.faults]
KILLS = 12  # per backend


def big_bundle(seed: int) -> dict:
    """v4 + v6, two chains, ~1,000 rules per family and a 2,000-entry set per family."""
    e4 = [f"198.{18 + seed % 2}.{i // 250}.{i % 250 + 1}/32" for i in range(2000)]
    e6 = [f"2001:2:{seed:x}:{i:x}::/64" for i in range(2000)]
    s4, s6 = set_name(4, e4), set_name(6, e6)

    def fam(setname, v6):
        rules = realistic_rules(1000, seed=seed, v6=v6)
        return {
            "filter": {
                "chains": {
                    "RPT-INPUT": [
                        f"-m set --match-set {setname} src -m comment --comment "
                        f'"rpt:sys:set{seed}" -j ACCEPT',
                        "-j RPT-RULES",
                        "-m comment --comment rpt:sys:default -j DROP",
                    ],
                    "RPT-RULES": rules,
                },
                "jumps": {"INPUT": ["RPT-INPUT"]},
            }
        }

    return make_bundle(v4=fam(s4, False), v6=fam(s6, True), sets={s4: e4, s6: e6})


def fingerprint(ns, backend) -> str:
    """Our chains (rule comments in order), jumps, and every rpt- set with its size."""
    out = []
    for v6 in (False, True):
        for line in ns.run(tool(backend, v6, "-save")).stdout.splitlines():
            if "RPT-" in line and line.startswith(("-A", ":")):
                out.append(f"{v6} {line}")
    for name in sorted(ns.run("ipset", "list", "-n").stdout.split()):
        head = ns.run("ipset", "list", "-t", name).stdout
        count = [ln for ln in head.splitlines() if ln.startswith("Number of entries")]
        out.append(f"set {name} {count}")
    return "\n".join(out)


def wait_for(path, timeout: float) -> None:
    """Return as soon as `path` exists (polled every 0.2 ms), or after `timeout`."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.0002)


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_kill_minus_9_during_apply_never_leaves_a_mix(backend, tmp_path):
    rng = random.Random(9)
    bundles = {"A": big_bundle(1), "B": big_bundle(2)}
    files = {k: write(tmp_path / f"{k}.json", v) for k, v in bundles.items()}
    with namespace("agk") as ns:
        state = tmp_path / "state"
        fps, took = {}, []
        for k in ("A", "B"):
            t0 = time.monotonic()
            agent(ns, backend, state, "apply", files[k])
            took.append(time.monotonic() - t0)
            fps[bundles[k]["hash"]] = fingerprint(ns, backend)
        assert fps[bundles["A"]["hash"]] != fps[bundles["B"]["hash"]]
        window = max(took) * 1.3
        journal_open = 0.03  # sets + two restores of ~1,000 rules, measured 25-35 ms
        current, outcomes = "B", []
        interrupted = 0
        for i in range(KILLS):
            nxt = "A" if current == "B" else "B"
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns.name,
                    "env",
                    f"PYTHONPATH={ROOT}",
                    *AGENT,
                    "apply",
                    files[nxt],
                    "--state-dir",
                    str(state),
                    "--dataplane",
                    backend,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if i % 2:
                # stratified over the whole run (interpreter start, planning, records)
                time.sleep(0.1 + (i + rng.random()) / KILLS * (window - 0.1))
            else:
                # inside the kernel work: the journal is open from just before the first
                # kernel change (sets, then v4, then v6) until the records are written
                wait_for(state / "run" / "journal.json", window)  # default_run_dir
                time.sleep(rng.random() * journal_open)
            # the agent and its children (iptables-restore, ipset) die together, as under
            # systemd's KillMode=control-group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            restored = json.loads(agent(ns, backend, state, "restore").stdout)
            applied = restored["restored"]
            interrupted += restored["reason"] == "interrupted apply undone at start"
            fp = fingerprint(ns, backend)
            assert fp in fps.values(), "the kernel holds a mix of two policies"
            assert fp == fps[applied], "the kernel does not hold the confirmed policy"
            current = "A" if applied == bundles["A"]["hash"] else "B"
            outcomes.append("new" if current == nxt else "old")
        status = json.loads(agent(ns, backend, state, "status").stdout)
        assert not status["drift"]["drifted"], status["drift"]["diff"]
        print(
            f"{backend}: window {window:.2f}s outcomes {outcomes}, "
            f"{interrupted} killed with the journal open"
        )
        assert interrupted >= 1  # the campaign really hit the middle of an apply


def set_bundle(ports_from: int, n: int = 8000) -> dict:
    """One block of n disjoint accept rules, set-compiled into one lookup set: two such
    bundles with other ports have the same tables and differ only in the set's elements
    (an apply between them is an element update of 2n lines, no table write)."""
    compiler = pytest.importorskip("compiler")
    rules = [
        {
            "id": f"{i:08x}-eeee-4000-8000-000000000000",
            "chain": "input",
            "action": "accept",
            "sources": [f"198.18.{i // 250}.{i % 250 + 1}/32"],
            "protocol": "udp",
            "dports": [str(ports_from + i if i else 53)],  # the first rule names the set
        }
        for i in range(n)
    ]
    data = {
        "version": 1,
        "rulesets": [{"name": "blk", "rules": rules}],
        "devices": [{"name": "srv", "rulesets": ["blk"]}],
    }
    doc = compiler.PolicyDocument.from_dict(data)
    # one set, not parts by port cell (whose cells follow the ports): a long element update
    options = compiler.CompileOptions(set_compile=True, set_elements_max=None)
    now = datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC)
    return compiler.compile_device(doc, "srv", options=options, now=now).to_dict(rules=False)


def elements(ns) -> str:
    """Every element of every rpt- set (without counters)."""
    lines = ns.run("ipset", "save").stdout.splitlines()
    return "\n".join(sorted(ln.split(" packets ")[0] for ln in lines if ln.startswith("add rpt-")))


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_kill_minus_9_during_a_set_update_never_leaves_a_mix(backend, tmp_path):
    rng = random.Random(16)
    bundles = {"A": set_bundle(10000), "B": set_bundle(30000)}
    assert bundles["A"]["iptables_v4"] == bundles["B"]["iptables_v4"]
    files = {k: write(tmp_path / f"{k}.json", v) for k, v in bundles.items()}
    with namespace("ags") as ns:
        state = tmp_path / "state"
        fps = {}
        for k in ("A", "B"):
            agent(ns, backend, state, "apply", files[k])
            fps[bundles[k]["hash"]] = fingerprint(ns, backend) + elements(ns)
        assert fps[bundles["A"]["hash"]] != fps[bundles["B"]["hash"]]
        current, outcomes, interrupted = "B", [], 0
        for i in range(KILLS // 2):
            nxt = "A" if current == "B" else "B"
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns.name, "env", f"PYTHONPATH={ROOT}", *AGENT]
                + ["apply", files[nxt], "--state-dir", str(state), "--dataplane", backend],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            # the element batch (16k lines, ~30-60 ms) runs while the journal is open; every
            # other kill later, in the records' writes or after the apply
            wait_for(state / "run" / "journal.json", 10)
            time.sleep(rng.random() * (0.06 if i % 2 else 0.4))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            restored = json.loads(agent(ns, backend, state, "restore").stdout)
            interrupted += restored["reason"] == "interrupted apply undone at start"
            fp = fingerprint(ns, backend) + elements(ns)
            assert fp in fps.values(), "the kernel holds a mix of two policies' elements"
            assert fp == fps[restored["restored"]], "the kernel does not hold the confirmed one"
            current = "A" if restored["restored"] == bundles["A"]["hash"] else "B"
            outcomes.append("new" if current == nxt else "old")
        status = json.loads(agent(ns, backend, state, "status").stdout)
        assert not status["drift"]["drifted"], status["drift"]["diff"]
        print(f"{backend}: set updates {outcomes}, {interrupted} killed with the journal open")
        assert interrupted >= 1
