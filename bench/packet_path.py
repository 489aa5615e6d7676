"""Packet-path benchmark: new TCP connections/s through the policy, linear next to set-compiled.

    sudo .venv/bin/python bench/packet_path.py [--dataplanes legacy,nft,nft-native]
        [--sizes 10000,50000] [--seconds 3] [--rounds 3] [--clients 2] [--cases packet,change,e2e]

Two `rpt_` namespaces joined by a veth pair (198.18.0.0/15 addresses): a TCP server in one
(two processes accepting and closing), in the other a client opening short connections at
concurrency 64 (`--clients` processes with an epoll loop each, closing with RST so no
TIME_WAIT runs out the ports; two reach ~16k conn/s with no rules on a quiet 2-CPU
machine, so a 10k-rule walk shows against them). Cases:

  packet  new connections/s with no rules; the stateful minimum hand-written for the raw
          tool (loopback, ESTABLISHED,RELATED, the bench port, drop: conntrack's own cost,
          the floor of any stateful policy, shown as "% stateful"); the policy as linear
          rules (N realistic rules of bench/policies.py, none matching the traffic, then
          `accept tcp 8080`, compiled with set compilation off); the policy as Rampart compiles it (`set_compile` on,
          with the ipset types this kernel has, probed first; every shape on nftables).
          Loaded by the agent's own apply into the server's
          namespace, on each dataplane: iptables-legacy, iptables-nft, native nftables (a
          dataplane the agent does not have is skipped, saying why). Each round runs
          no rules first and last and the others between, in an order rotated round by
          round; every configuration's % is the median over rounds of its rate over the
          mean no-rule rate of its own round (the machine's speed drifts by 10-20 %
          between runs; per-round %s are in the JSON lines). "SYN walks": the rules
          and set lookups the bench's SYN meets on its way to its accept, counted by
          the tracer walking the same compiled program in the rendered match order
          (what the kernel's per-packet cost beyond the stateful minimum comes from).
                                                                   (target: >= 90 %)
  change  a one-rule change on a device holding the largest N: the agent's apply of the
          changed bundle next to a raw full restore of the same policy as linear rules into
          an empty namespace.                                       (target: >= 15x)
  e2e     document -> compiler -> agent apply of the 10k-rule policy, in an empty namespace
          (API-free: PolicyDocument.from_dict, compile_device cold, Engine.apply).
                                                                   (target: <= 240 ms)

Prints a table and appends JSON lines to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import bisect
import ipaddress
import json
import os
import platform
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from policies import NOW, one_rule_changed, realistic  # noqa: E402

from compiler import CompileOptions, PolicyDocument, compile_device  # noqa: E402
from compiler.bundle import Bundle, with_nft  # noqa: E402
from compiler.ir import SHAPES, Program, Rule  # noqa: E402
from compiler.lower import RULESET_CACHE  # noqa: E402
from compiler.tracer import Packet, Tracer, proto_matches  # noqa: E402
from rampart_agent.dataplane import Dataplane, open_dataplane  # noqa: E402
from rampart_agent.engine import Engine  # noqa: E402
from rampart_agent.state import StateDir  # noqa: E402

PORT = 8080
CONCURRENCY = 64
WARMUP = 0.3  # seconds of each run not counted (connections ramping up)
DATAPLANES = {"legacy": "iptables-legacy", "nft": "iptables-nft", "nft-native": "nftables"}
ALL_SET_TYPES = frozenset(kind for kind, _ in SHAPES.values())


# --- policy ------------------------------------------------------------------------------


def policy(n: int) -> dict:
    """N realistic rules (none matching the bench traffic), then `accept tcp 8080`."""
    data = realistic(n)
    rules = data["rulesets"][0]["rules"]
    rules.append(
        {
            "id": "00000000-0000-4000-8000-000000008080",
            "chain": "input",
            "action": "accept",
            "protocol": "tcp",
            "dports": [str(PORT)],
            "comment": "bench traffic",
        }
    )
    return data


def _ports_cover(spec: list[str], port: int) -> bool:
    for p in spec:
        lo, _, hi = p.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def addresses(n: int) -> tuple[str, str]:
    """(server, client): addresses of 198.18.0.0/15 no rule of the N-rule policy matches
    (the realistic sources cover the whole range: the client's source is in many of them,
    each of which then fails on protocol or port, as in real traffic)."""
    rules = realistic(n)["rulesets"][0]["rules"]
    hits = [
        ipaddress.ip_network(r["sources"][0])
        for r in rules
        if r["protocol"] == "tcp" and _ports_cover(r["dports"], PORT)
    ]
    starts = sorted((int(h.network_address), int(h.broadcast_address)) for h in hits)
    dests = {d for r in rules for d in r.get("destinations", [])}
    found = []
    for ip in range(int(ipaddress.IPv4Address("198.19.255.254")), 0, -1):
        i = bisect.bisect_right(starts, (ip, 1 << 33))
        if any(a <= ip <= b for a, b in starts[max(0, i - 64) : i]):
            continue
        text = str(ipaddress.IPv4Address(ip))
        if text not in dests:
            found.append(text)
        if len(found) == 2:
            return found[0], found[1]
    raise SystemExit("no address outside the policy's rules")


def ipset_types() -> frozenset[str]:
    """The set types this kernel creates with `counters comment` (what an agent reports in
    its facts), probed in a throwaway rpt_ namespace."""
    ns = f"rpt_ppt{os.getpid() % 10000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ok = set()
        for kind in ALL_SET_TYPES:
            argv = ["ip", "netns", "exec", ns, "ipset", "create", "rpt-probe", kind]
            if subprocess.run([*argv, "counters", "comment"], capture_output=True).returncode == 0:
                ok.add(kind)
                subprocess.run(["ip", "netns", "exec", ns, "ipset", "destroy", "rpt-probe"])
        return frozenset(ok)
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def options_for(mode: str, dataplane: str, types: frozenset[str]) -> CompileOptions:
    """`linear` (set compilation off) or `rampart` (set-compiled with the set types the
    dataplane has: the kernel's ipset types; every shape for nftables)."""
    native = dataplane == "nft-native"
    return CompileOptions(
        set_compile=mode != "linear",
        set_types=ALL_SET_TYPES if native else types,
        # nft interval sets hold a port range as one element (rules/compile_options.py)
        set_range_max=65536 if native else 64,
    )


def compiled_for(data: dict, mode: str, dataplane: str, types: frozenset[str]) -> Bundle:
    """The compiled bundle (see `options_for`); nftables' carries its `nft` script."""
    options = options_for(mode, dataplane, types)
    bundle = compile_device(PolicyDocument.from_dict(data), "bench", options=options, now=NOW)
    return with_nft(bundle) if dataplane == "nft-native" else bundle


def bundle_for(data: dict, mode: str, dataplane: str, types: frozenset[str]) -> dict:
    """The pushed bundle: `compiled_for`'s, as the console sends it."""
    return compiled_for(data, mode, dataplane, types).to_dict(rules=False)


class WalkCounter(Tracer):
    """The tracer, counting what the kernel evaluates for one packet on its way to the
    verdict: the rules, and the set lookups (a set-compiled block's, an address group's)
    a rule reaches once its protocol and ports matched (the rendered match order)."""

    def __init__(self, program: Program) -> None:
        super().__init__(program)
        self.rules = self.lookups = 0

    def matches(self, r: Rule, p: Packet) -> bool:
        self.rules += 1
        if r.proto is None or proto_matches(r, p):
            self.lookups += r.lookup is not None
            self.lookups += sum(m is not None and m.set_name is not None for m in (r.src, r.dst))
        return super().matches(r, p)


def walk(program: Program, server: str, client: str) -> tuple[int, int]:
    """(rules evaluated, set lookups) for the bench's SYN through the compiled program."""
    counter = WalkCounter(program)
    params = {"chain": "input", "protocol": "tcp", "source": client, "destination": server}
    result = counter.trace(Packet.from_params({**params, "dport": PORT, "state": "new"}))
    assert result.verdict == "accept", result.tag  # the bench's accept, not a policy rule
    return counter.rules, counter.lookups


# --- inside the namespaces ---------------------------------------------------------------


def serve(addr: str, procs: int) -> None:
    """Accept and close, in `procs` processes sharing the port (SO_REUSEPORT)."""
    for _ in range(procs - 1):
        if os.fork() == 0:
            break
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((addr, PORT))
    sock.listen(4096)
    accept = sock.accept
    while True:
        accept()[0].close()


def client(addr: str, concurrency: int, seconds: float) -> None:
    """Open connections, `concurrency` at a time, for WARMUP + `seconds`; print how many
    completed after the warm-up, and how many failed."""
    ep = select.epoll()
    linger = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT on the client
    socks: dict[int, socket.socket] = {}
    started: dict[int, float] = {}

    def new() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.connect_ex((addr, PORT))
        fd = s.fileno()
        socks[fd] = s
        started[fd] = time.monotonic()
        ep.register(fd, select.EPOLLOUT)

    for _ in range(concurrency):
        new()
    done = failed = 0
    now = time.monotonic()
    count_from, end = now + WARMUP, now + WARMUP + seconds
    while now < end:
        for fd, _ in ep.poll(0.1):
            s = socks.pop(fd)
            ep.unregister(fd)
            ok = not s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            s.close()
            new()
            if now >= count_from:
                done += ok
                failed += not ok
        now = time.monotonic()
        for fd, t in list(started.items()):  # a SYN the policy dropped: give up on it
            if fd in socks and now - t > 1.0:
                ep.unregister(fd)
                socks.pop(fd).close()
                failed += 1
                new()
        started = {fd: t for fd, t in started.items() if fd in socks}
    print(json.dumps({"done": done, "failed": failed}))


def make_dataplane(name: str) -> Dataplane:
    """The agent's dataplane `name` (raises ValueError/ImportError if it has none)."""
    return open_dataplane(name)


def load(dataplane: str, bundle_file: str) -> None:
    """Apply the bundle in this namespace as the agent does (fresh state: a full apply)."""
    dp = make_dataplane(dataplane)
    with tempfile.TemporaryDirectory(prefix="rpt-pp-") as tmp:
        state = StateDir(tmp, os.path.join(tmp, "run"))
        state.ensure_identity()
        engine = Engine(state, dp)
        engine.start(serving=False)
        bundle = json.loads(Path(bundle_file).read_text())
        engine.apply({"bundle": bundle, "version": 1, "confirm_timeout": 0})
        engine.shutdown()


# The least a stateful firewall does, hand-written for the raw tools: loopback, the
# ESTABLISHED,RELATED accept (which turns conntrack on for every connection), the bench's
# port, drop the rest. No policy can run faster than this on a host that keeps state.
STATEFUL_IPTABLES = f"""*filter
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport {PORT} -j ACCEPT
-A INPUT -j DROP
COMMIT
"""
STATEFUL_NFT = f"""table inet rpt_stateful {{
\tchain input {{
\t\ttype filter hook input priority filter; policy accept;
\t\tiif "lo" accept
\t\tct state established,related accept
\t\ttcp dport {PORT} accept
\t\tdrop
\t}}
}}
"""


def load_stateful(dataplane: str) -> None:
    """(In the server's namespace.) The hand-written stateful minimum, by the raw tool."""
    if dataplane == "nft-native":
        subprocess.run(["nft", "-f", "-"], input=STATEFUL_NFT, text=True, check=True)
        return
    tool = f"iptables-{dataplane}-restore"
    subprocess.run([tool, "--noflush"], input=STATEFUL_IPTABLES, text=True, check=True)


def flush() -> None:
    """Nothing filters in this namespace any more (every backend, every set)."""
    empty = "".join(f"*{t}\nCOMMIT\n" for t in ("filter", "nat", "mangle", "raw"))
    for tool in ("iptables-legacy-restore", "ip6tables-legacy-restore"):
        subprocess.run([tool], input=empty, text=True, check=False, capture_output=True)
    subprocess.run(["nft", "flush", "ruleset"], check=False, capture_output=True)
    subprocess.run(["ipset", "destroy"], check=False, capture_output=True)


def raw_load(dataplane: str, bundle: dict) -> None:
    """The raw tools loading `bundle` into this namespace: the floor under an apply."""
    if dataplane == "nft-native":
        subprocess.run(["nft", "-f", "-"], input=bundle["nft"], text=True, check=True)
        return
    restore = f"iptables-{dataplane}-restore"
    if bundle["ipsets"]:
        subprocess.run(["ipset", "restore"], input=bundle["ipsets"], text=True, check=True)
    subprocess.run([restore, "--noflush"], input=bundle["iptables_v4"], text=True, check=True)
    subprocess.run(
        [f"ip6{restore[2:]}", "--noflush"], input=bundle["iptables_v6"], text=True, check=True
    )


def change_and_e2e(
    dataplane: str, n: int, cases: list[str], runs: int, types: frozenset[str]
) -> None:
    """(In an empty namespace.) One-rule change on an n-rule device against a raw full
    restore of the linear policy; compile + apply end to end of 10k rules."""
    dp = make_dataplane(dataplane)
    tmp = Path(tempfile.mkdtemp(prefix="rpt-pp-", dir="/var/tmp"))

    def engine() -> Engine:
        state = StateDir(tempfile.mkdtemp(dir=tmp), tempfile.mkdtemp(dir="/dev/shm"))
        state.ensure_identity()
        e = Engine(state, dp)
        e.start()
        return e

    def emit(**row: object) -> None:
        print(json.dumps({"dataplane": dataplane, **row}), flush=True)

    confirms: list[tuple[Engine, int]] = []

    def apply(e: Engine, bundle: dict, version: int) -> None:
        """POST /v1/apply as the console sends it; its confirm is not part of the apply."""
        e.apply({"bundle": bundle, "version": version, "confirm_timeout": 30})
        confirms.append((e, version))

    def confirm_all() -> None:
        while confirms:  # untimed: the console confirms after its own health check
            e, version = confirms.pop(0)
            e.confirm(version)

    def ms(fn) -> float:  # noqa: ANN001
        time.sleep(0.05)  # the same idle pause before each side (see bench/apply.py)
        t0 = time.perf_counter()
        fn()
        took = (time.perf_counter() - t0) * 1000
        confirm_all()
        return took

    if "change" in cases:
        linear = bundle_for(policy(n), "linear", dataplane, types)
        raw = []
        for _ in range(max(3, runs)):
            flush()
            raw.append(ms(lambda: raw_load(dataplane, linear)))
        flush()
        data = policy(n)
        base = bundle_for(data, "rampart", dataplane, types)
        changed = bundle_for(one_rule_changed(data), "rampart", dataplane, types)
        e = engine()
        apply(e, base, 1)
        confirm_all()
        times = []
        for v in range(2, 2 + 2 * max(3, runs)):
            b = changed if v % 2 == 0 else base
            times.append(ms(lambda e=e, b=b, v=v: apply(e, b, v)))
        e.shutdown()
        one = statistics.median(times)
        full = statistics.median(raw) if raw else None
        emit(
            case="1-rule change",
            n=n,
            raw_full_ms=full,
            agent_ms=one,
            ratio=full / one if full else None,
            target=">=15 (raw full linear / agent change)",
        )
    if "e2e" in cases:
        data = policy(10000)
        times, compiles = [], []
        for _ in range(max(3, runs)):
            flush()
            e = engine()
            RULESET_CACHE.clear()  # a cold compile: nothing of this policy compiled before

            def end_to_end(e: Engine = e) -> None:
                t0 = time.perf_counter()
                bundle = bundle_for(data, "rampart", dataplane, types)
                compiles.append((time.perf_counter() - t0) * 1000)
                apply(e, bundle, 1)

            times.append(ms(end_to_end))
            e.shutdown()
        bundle = bundle_for(data, "rampart", dataplane, types)
        raw = []
        for _ in range(max(3, runs)):
            flush()
            raw.append(ms(lambda: raw_load(dataplane, bundle)))
        emit(
            case="compile+apply",
            n=10000,
            agent_ms=statistics.median(times),
            compile_ms=statistics.median(compiles),
            raw_load_ms=statistics.median(raw),
            target="<=240 ms",
        )
    flush()


# --- outer: namespaces, rounds, table, results file ----------------------------------------


def sh(*argv: str, input: str | None = None, check: bool = True) -> str:
    return subprocess.run(argv, input=input, text=True, check=check, capture_output=True).stdout


def me(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, __file__, *args]


class Net:
    """The server and client namespaces, the veth between them, the server processes."""

    def __init__(self, server: str, client: str, procs: int) -> None:
        tag = os.getpid() % 10000
        self.srv, self.cli = f"rpt_pps{tag}", f"rpt_ppc{tag}"
        self.server, self.client = server, client
        self.procs = procs
        self.server_proc: subprocess.Popen | None = None

    def __enter__(self) -> Net:
        sh("ip", "netns", "add", self.srv)
        sh("ip", "netns", "add", self.cli)
        a, b = self.srv.replace("rpt_pps", "rpt_v"), self.cli.replace("rpt_ppc", "rpt_w")
        sh(
            "ip",
            "link",
            "add",
            a,
            "netns",
            self.srv,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "netns",
            self.cli,
        )
        for ns, dev, mine, other in (
            (self.srv, a, self.server, self.client),
            (self.cli, b, self.client, self.server),
        ):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{mine}/32", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "route", "add", f"{other}/32", "dev", dev)
        sh(
            "ip",
            "netns",
            "exec",
            self.cli,
            "sysctl",
            "-qw",
            "net.ipv4.ip_local_port_range=1024 65000",
        )
        self.server_proc = subprocess.Popen(me(self.srv, "--serve", self.server, "--procs", "2"))
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server_proc is not None:
            for pid in sh("ip", "netns", "pids", self.srv, check=False).split():
                subprocess.run(["kill", pid], check=False)
            self.server_proc.wait(timeout=10)
        for ns in (self.srv, self.cli):
            subprocess.run(["ip", "netns", "delete", ns], check=False)

    def rate(self, seconds: float, clients: int) -> tuple[float, int]:
        """New connections/s (all client processes together) and failures."""
        procs = [
            subprocess.Popen(
                me(
                    self.cli,
                    "--client",
                    self.server,
                    "--concurrency",
                    str(CONCURRENCY // clients),
                    "--seconds",
                    str(seconds),
                ),
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(clients)
        ]
        done = failed = 0
        for p in procs:
            out = json.loads(p.communicate(timeout=seconds + 60)[0].strip().splitlines()[-1])
            done += out["done"]
            failed += out["failed"]
        return done / seconds, failed

    def load(self, dataplane: str, bundle: dict | str | None) -> None:
        """Flush, then load `bundle` by the agent's apply (None: nothing; "stateful": the
        hand-written stateful minimum by the raw tool)."""
        subprocess.run(me(self.srv, "--flush"), check=True)
        if bundle is None:
            return
        if bundle == "stateful":
            subprocess.run(me(self.srv, "--stateful", dataplane), check=True)
            return
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir="/dev/shm") as fh:
            json.dump(bundle, fh)
            fh.flush()
            proc = subprocess.run(
                me(self.srv, "--load", dataplane, fh.name), capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise RuntimeError(f"load on {dataplane} failed: {proc.stderr[-2000:]}")


def available(dataplane: str) -> str | None:
    """Why `dataplane` cannot be measured (None: it can)."""
    try:
        make_dataplane(dataplane)
    except (ValueError, ImportError) as exc:
        return f"the agent has no {DATAPLANES[dataplane]} dataplane yet ({exc})"
    return None


def dataplane_rows(
    args: argparse.Namespace,
    net: Net,
    dataplane: str,
    configs: list[tuple[str, int, dict | str | None]],
    types: frozenset[str],
    walks: dict[tuple[str, int], tuple[int, int]],
) -> list[dict]:
    """The packet rows of one dataplane: `configs[0]` is no rules, measured first and last
    in every round. `walks`: (rules, set lookups) the SYN meets, per (policy, n)."""
    rows: list[dict] = []
    rates: dict[tuple[str, int], list[float]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    fails: dict[tuple[str, int], int] = {}

    def measure(mode: str, n: int, bundle: dict | str | None) -> float:
        net.load(dataplane, bundle)
        r, f = net.rate(args.seconds, args.clients)
        rates.setdefault((mode, n), []).append(r)
        fails[mode, n] = fails.get((mode, n), 0) + f
        return r

    others = configs[1:]
    for k in range(args.rounds):
        # each round bracketed by no rules, the others in a rotated order: the
        # machine's speed drifts by 10-20 % between runs, so each configuration is
        # compared with the no-rule rate of its own round (the mean of the two)
        first = measure(*configs[0])
        order = others[k % len(others) :] + others[: k % len(others)]
        got = {(mode, n): measure(mode, n, bundle) for mode, n, bundle in order}
        last = measure(*configs[0])
        base = (first + last) / 2
        for key, r in got.items():
            ratios.setdefault(key, []).append(r / base)
    floor = statistics.median(ratios["stateful", 0])
    for (mode, n), rs in rates.items():
        mine = ratios.get((mode, n))
        pct = 100 * statistics.median(mine) if mine else 100.0
        rows.append(
            {
                "case": "packet",
                "dataplane": dataplane,
                "policy": mode,
                "n": n,
                "conn_s": round(statistics.median(rs), 1),
                "runs": [round(r) for r in rs],
                "round_pcts": [round(100 * x, 1) for x in mine or []],
                "pct_of_none": round(pct, 1),
                "pct_of_stateful": round(pct / floor, 1),
                "failed": fails[mode, n],
                "walk_rules": walks.get((mode, n), (None, None))[0],
                "walk_lookups": walks.get((mode, n), (None, None))[1],
                "set_types": sorted(types) if mode == "rampart" else [],
                "target": ">=90 %" if mode == "rampart" else "",
            }
        )
    return rows


def packet_rows(
    args: argparse.Namespace, dataplanes: list[str], sizes: list[int], types: frozenset[str]
) -> list[dict]:
    server, client_addr = addresses(max(sizes))
    rows = []
    with Net(server, client_addr, 2) as net:
        for dataplane in dataplanes:
            configs: list[tuple[str, int, dict | str | None]] = [
                ("none", 0, None),
                ("stateful", 0, "stateful"),
            ]
            walks: dict[tuple[str, int], tuple[int, int]] = {}
            for n in sizes:
                data = policy(n)
                for m in ("linear", "rampart"):
                    bundle = compiled_for(data, m, dataplane, types)
                    assert bundle.program is not None  # a fresh compile keeps its program
                    configs.append((m, n, bundle.to_dict(rules=False)))
                    walks[m, n] = walk(bundle.program, server, client_addr)
            rows += dataplane_rows(args, net, dataplane, configs, types, walks)
    return rows


def apply_rows(
    args: argparse.Namespace,
    dataplanes: list[str],
    sizes: list[int],
    cases: list[str],
    types: frozenset[str],
) -> list[dict]:
    rows = []
    for dataplane in dataplanes:
        ns = f"rpt_ppa{os.getpid() % 10000}"
        sh("ip", "netns", "add", ns)
        try:
            proc = subprocess.run(
                me(
                    ns,
                    "--inner",
                    dataplane,
                    "--n",
                    str(max(sizes)),
                    "--cases",
                    ",".join(cases),
                    "--rounds",
                    str(args.rounds),
                    "--types",
                    ";".join(sorted(types)),
                ),
                capture_output=True,
                text=True,
                timeout=args.timeout,
            )
        except subprocess.TimeoutExpired as exc:
            # what finished is kept; the rest is reported as not measured, not waited for
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            rows += [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
            why = f"change/e2e not finished within {args.timeout:.0f} s"
            rows.append({"case": "skipped", "dataplane": dataplane, "reason": why})
            continue
        else:
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(1)
            rows += [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
        finally:
            subprocess.run(["ip", "netns", "delete", ns], check=False)
    return rows


def print_table(rows: list[dict], stamp: str, load: float) -> None:
    print(f"\npacket path and set updates ({stamp}, {os.cpu_count()} CPUs, load {load:.1f})")
    packet = [r for r in rows if r["case"] == "packet"]
    if packet:
        print(
            f"{'dataplane':16} {'policy':8} {'rules':>6} {'conn/s':>8} {'% none':>7} "
            f"{'% stateful':>10} {'failed':>6} {'SYN walks':>15}  target"
        )
        for r in packet:
            walked = (
                f"{r['walk_rules']} r, {r['walk_lookups']} sets"
                if r.get("walk_rules") is not None
                else ""
            )
            print(
                f"{DATAPLANES[r['dataplane']]:16} {r['policy']:8} {r['n']:>6} {r['conn_s']:>8.0f} "
                f"{r['pct_of_none']:>6.1f}% {r['pct_of_stateful']:>9.1f}% {r['failed']:>6} "
                f"{walked:>15}  {r['target']}"
            )
    for r in rows:
        if r["case"] == "1-rule change":
            full = f"{r['raw_full_ms']:.1f} ms" if r["raw_full_ms"] else "n/a"
            ratio = f"{r['ratio']:.1f}x" if r["ratio"] else "n/a"
            print(
                f"{DATAPLANES[r['dataplane']]:16} 1-rule change, {r['n']} rules: agent "
                f"{r['agent_ms']:.1f} ms, raw full linear restore {full}: {ratio}  ({r['target']})"
            )
        elif r["case"] == "compile+apply":
            print(
                f"{DATAPLANES[r['dataplane']]:16} compile+apply {r['n']} rules: "
                f"{r['agent_ms']:.1f} ms, of which compile {r['compile_ms']:.1f} ms; "
                f"the raw tools alone load it in {r.get('raw_load_ms', 0):.1f} ms  "
                f"({r['target']})"
            )
    for r in rows:
        if r["case"] == "skipped":
            print(f"{DATAPLANES[r['dataplane']]:16} skipped: {r['reason']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataplanes", default="legacy,nft,nft-native")
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--cases", default="packet,change,e2e")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds for the change/e2e cases per dataplane"
    )
    parser.add_argument("--results", default=str(ROOT / "bench" / "results.jsonl"))
    # inside the namespaces
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--procs", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--flush", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stateful", help=argparse.SUPPRESS)
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=50000, help=argparse.SUPPRESS)
    parser.add_argument("--types", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = args.cases.split(",")
    if args.serve:
        serve(args.serve, args.procs)
        return 0
    if args.client:
        client(args.client, args.concurrency, args.seconds)
        return 0
    if args.flush:
        flush()
        return 0
    if args.stateful:
        load_stateful(args.stateful)
        return 0
    if args.load:
        load(*args.load)
        return 0
    if args.inner:
        types = frozenset(t for t in args.types.split(";") if t)
        change_and_e2e(args.inner, args.n, cases, args.rounds, types)
        return 0
    if os.geteuid() != 0:
        print(
            "bench/packet_path.py: error: needs root (it creates rpt_ network namespaces)",
            file=sys.stderr,
        )
        return 1
    sizes = [int(s) for s in args.sizes.split(",")]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows: list[dict] = []
    dataplanes = []
    for dp in args.dataplanes.split(","):
        why = available(dp)
        if why:
            print(f"skipping {DATAPLANES[dp]}: {why}", file=sys.stderr)
            rows.append({"case": "skipped", "dataplane": dp, "reason": why})
        else:
            dataplanes.append(dp)
    types = ipset_types()
    print(f"ipset types with counters and comment here: {', '.join(sorted(types))}")
    if "packet" in cases:
        rows += packet_rows(args, dataplanes, sizes, types)
    apply_cases = [c for c in cases if c in ("change", "e2e")]
    if apply_cases:
        rows += apply_rows(args, dataplanes, sizes, apply_cases, types)
    load1 = os.getloadavg()[0]
    print_table(rows, stamp, load1)
    with open(args.results, "a") as fh:
        for r in rows:
            extra = {"host": platform.node(), "cpus": os.cpu_count(), "load": round(load1, 2)}
            fh.write(json.dumps({"bench": "packet_path", "at": stamp, **extra, **r}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
