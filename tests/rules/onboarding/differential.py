"""The differential onboarding harness: the original host and its migration, side by side.

Two identical sites are built, each of three `rpt_` namespaces: a client (three source
addresses per family), the host (eth0 towards the client, `lan` towards a backend it
routes to) and a backend. Namespaces isolate addresses, so both sites use the very same
ones and every rule that names an address or an interface means the same on both.

The original host gets its firewall from the real tool (hosts.py); its dumps are onboarded
through `POST /api/v1/policy/from-iptables-save/` (one rule set per family), a device is
created through `POST /api/v1/devices/`, compiled through `agents.device_policy` (the one
compile path) and the bundle is applied by the real agent (`rampart-agent apply`, iptables
nft backend) on the migrated host. The same probes then go to both sites and each gets a
verdict (tests/support/verdicts.py); a disagreement is *flagged* when the import report
lists a verdict-changing loss whose rule could match that probe, in the right direction.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
import shlex
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agents.device_policy import Target, device_policy
from rules.models import Device
from tests.rampart_agent.agentns import agent
from tests.support.netns import Netns, namespace, sh

VERDICTS = str(Path(__file__).resolve().parents[2] / "support" / "verdicts.py")
ONBOARD_URL = "/api/v1/policy/from-iptables-save/?import=1&accept_losses=1"
HOST4, HOST6 = "198.18.40.2", "2001:2:0:28::2"
SOURCES = {
    4: ("198.18.40.1", "198.18.40.66", "198.19.200.7"),
    6: ("2001:2:0:28::1", "2001:2:0:28::66", "2001:2:c8::7"),
}
BACKEND = {4: "198.19.17.2", 6: "2001:2:1:11::2"}
HOST = {4: HOST4, 6: HOST6}
TIMEOUT, RETRY_TIMEOUT = 0.3, 1.5
PERMISSIVE, RESTRICTIVE = "more permissive", "more restrictive"
_veth = itertools.count(1)


@dataclass
class Site:
    client: Netns
    host: Netns
    backend: Netns


def _veth_pair(a: Netns, a_dev: str, b: Netns, b_dev: str) -> None:
    n = f"{os.getpid() % 10000}x{next(_veth)}"
    ta, tb = f"rqa{n}", f"rqb{n}"
    sh(
        "ip",
        "link",
        "add",
        ta,
        "netns",
        a.name,
        "type",
        "veth",
        "peer",
        "name",
        tb,
        "netns",
        b.name,
    )
    for ns, tmp, dev in ((a, ta, a_dev), (b, tb, b_dev)):
        ns.run("ip", "link", "set", tmp, "name", dev)
        ns.run("ip", "link", "set", dev, "up")


def _addr(ns: Netns, dev: str, *cidrs: str) -> None:
    for cidr in cidrs:
        extra = ["nodad"] if ":" in cidr else []
        ns.run("ip", "addr", "add", cidr, "dev", dev, *extra)


@contextmanager
def site(tag: str, lan: str = "lan0") -> Iterator[Site]:
    """client --eth0-- host --`lan`-- backend, the host forwarding both families."""
    with ExitStack() as stack:
        client, host, backend = (stack.enter_context(namespace(tag + s)) for s in "chb")
        _veth_pair(client, "eth0", host, "eth0")
        _veth_pair(host, lan, backend, "eth0")
        s4, s6 = SOURCES[4], SOURCES[6]
        _addr(client, "eth0", f"{s4[0]}/24", f"{s4[1]}/24", f"{s4[2]}/32")
        _addr(client, "eth0", f"{s6[0]}/64", f"{s6[1]}/64", f"{s6[2]}/128")
        _addr(host, "eth0", f"{HOST4}/24", f"{HOST6}/64")
        _addr(host, lan, "198.19.17.1/24", "2001:2:1:11::1/64")
        _addr(backend, "eth0", f"{BACKEND[4]}/24", f"{BACKEND[6]}/64")
        client.run("ip", "route", "add", "198.19.17.0/24", "via", HOST4)
        client.run("ip", "-6", "route", "add", "2001:2:1:11::/64", "via", HOST6)
        host.run("ip", "route", "add", f"{s4[2]}/32", "via", s4[0])
        host.run("ip", "-6", "route", "add", f"{s6[2]}/128", "via", s6[0])
        backend.run("ip", "route", "add", "default", "via", "198.19.17.1")
        backend.run("ip", "-6", "route", "add", "default", "via", "2001:2:1:11::1")
        host.run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        # every REJECT answered: the kernel's ICMP rate limit (6 per peer, then 1/s) would
        # turn the n-th rejection to one client into a timeout, on both hosts alike
        host.run("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0")
        for _ in range(30):  # neighbour discovery both ways before any firewall
            ok = client.run("ping", "-6", "-c1", "-W1", HOST6, check=False).returncode == 0
            back = backend.run("ping", "-6", "-c1", "-W1", "2001:2:1:11::1", check=False)
            if ok and back.returncode == 0:
                break
        yield Site(client, host, backend)


@dataclass(frozen=True)
class Probe:
    proto: str  # tcp, udp, icmp
    src: str
    dst: str
    port: int  # 0 for icmp
    path: str  # input or forward
    nth: int = 0  # the n-th of a burst of the same probe (rate limits)

    @property
    def family(self) -> int:
        return 6 if ":" in self.dst else 4

    def key(self) -> str:
        port = f"/{self.port}" if self.port else ""
        nth = f" #{self.nth}" if self.nth else ""
        return f"{self.path} {self.proto}{port} {self.src} -> {self.dst}{nth}"


@dataclass(frozen=True)
class Ports:
    """What is probed: ports on the host (INPUT) and on the backend (FORWARD)."""

    tcp: tuple[int, ...]
    udp: tuple[int, ...]
    fwd_tcp: tuple[int, ...] = (22, 80)
    fwd_udp: tuple[int, ...] = (53,)

    def probes(self) -> list[Probe]:
        out = []
        for fam, srcs in SOURCES.items():
            for src in srcs:
                for path, dst, tcp, udp in (
                    ("input", HOST[fam], self.tcp, self.udp),
                    ("forward", BACKEND[fam], self.fwd_tcp, self.fwd_udp),
                ):
                    out += [Probe("tcp", src, dst, p, path) for p in tcp]
                    out += [Probe("udp", src, dst, p, path) for p in udp]
                    out.append(Probe("icmp", src, dst, 0, path))
        return out


def listen(s: Site, ports: Ports) -> None:
    s.host.listen(tcp=ports.tcp, udp=ports.udp)
    s.backend.listen(tcp=ports.fwd_tcp, udp=ports.fwd_udp)


def _wire(sample: list[Probe], base: int) -> str:
    return json.dumps(
        [
            {"proto": p.proto, "src": p.src, "dst": p.dst, "port": p.port}
            | ({"id": base + i} if p.proto == "icmp" else {"sport": base + i})
            for i, p in enumerate(sample)
        ]
    )


def verdicts(client: Netns, sample: list[Probe], base: int, timeout: float) -> list[str]:
    out = client.run(sys.executable, VERDICTS, str(timeout), input=_wire(sample, base)).stdout
    return json.loads(out)


def burst(src: str, dst: str, proto: str, port: int, count: int) -> list[Probe]:
    """`count` new connections at once from one source: what a per-source limit decides."""
    return [Probe(proto, src, dst, port, "input", n) for n in range(1, count + 1)]


def probe_both(
    original: Site, migrated: Site, sample: list[Probe], base: int = 20000
) -> tuple[list, list]:
    """The same probes (same source ports from `base` on) on both sites at once; a timeout
    is probed again on both with a longer wait (source ports from `base` + 20000), so a
    loaded machine is not taken for a drop."""
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda s: verdicts(s.client, sample, base, TIMEOUT), (original, migrated))
        again = [
            i for i, (x, y) in enumerate(zip(a, b, strict=True)) if "dropped-timeout" in (x, y)
        ]
        if again:
            redo = [sample[i] for i in again]
            ra, rb = pool.map(
                lambda s: verdicts(s.client, redo, base + 20000, RETRY_TIMEOUT),
                (original, migrated),
            )
            for i, x, y in zip(again, ra, rb, strict=True):
                a[i], b[i] = x, y
    return a, b


# --- onboarding, compile, apply --------------------------------------------------------------


@dataclass
class Dumps:
    v4: str
    v6: str = ""
    ipsets: str = ""
    nft_json: str = ""  # `nft -j list ruleset`, for a host whose rules are native nftables


def has_rules(dump: str) -> bool:
    return bool(re.search(r"(?m)^(-A |:\S+ (DROP|REJECT) )", dump))


def dump_host(host: Netns) -> Dumps:
    ipsets = host.run("ipset", "save").stdout
    nft = host.run("nft", "-j", "list", "ruleset").stdout if shutil.which("nft") else ""
    v4, v6 = host.run("iptables-save").stdout, host.run("ip6tables-save").stdout
    return Dumps(v4, v6, ipsets, nft)


def onboard(api, kind: str, dumps: Dumps) -> dict[int, dict]:
    """The import reports per family (IPv6 only when the host has ip6tables rules; else the
    IPv4 rule set keeps IPv6 as it was)."""
    if not has_rules(dumps.v4) and not has_rules(dumps.v6):
        # native nftables (firewalld's nftables backend): both families in one dump
        res = api.post(
            ONBOARD_URL, {"iptables_save": dumps.nft_json, "ruleset": kind}, format="json"
        )
        assert res.status_code == 200, f"nft -j not onboarded: {res.content[:1500]!r}"
        return {4: res.json(), 6: res.json()}
    v6 = has_rules(dumps.v6)
    bodies = {
        4: {
            "iptables_save": dumps.v4,
            "ipset_save": dumps.ipsets,
            "ruleset": f"{kind}-v4",
            "family": 4,
            "keep_ipv6": not v6,
        }
    }
    if v6:
        bodies[6] = {"iptables_save": dumps.v6, "ruleset": f"{kind}-v6", "family": 6}
    reports = {}
    for fam, body in bodies.items():
        res = api.post(ONBOARD_URL, body, format="json")
        assert res.status_code == 200, (fam, res.content[:2000])
        reports[fam] = res.json()
    return reports


def migrate(api, kind: str, reports: dict[int, dict], migrated: Site, tmp_path: Path, *,
            fallthrough: bool = False) -> dict:  # fmt: skip
    """Create the device, compile it through agents.device_policy and have the real agent
    apply the bundle on the migrated host; the agent's answer."""
    res = api.post(
        "/api/v1/devices/",
        {
            "name": f"{kind}-migrated",
            "address": HOST4,
            "rulesets": sorted({r["document"]["rulesets"][0]["name"] for r in reports.values()}),
            # the host's policies, as the report gives them (the rule sets end with them
            # too); a drop default also brings the compiler's neighbour-discovery accepts.
            # Where Docker decides forwarded traffic: forward accept + fallthrough (docs).
            "default_policy": {
                "input": "accept",
                "output": "accept",
                **reports[4]["default_policy"],
                **({"forward": "accept"} if fallthrough else {}),
            },
            "stateful": False,
            "allow_loopback": False,
            # required (anti-lockout); an address no probe comes from
            "management_sources": ["198.19.255.254"],
            "forward_fallthrough": fallthrough,
        },
        format="json",
    )
    assert res.status_code == 201, res.content[:2000]
    bundle = device_policy(Device.objects.get(name=f"{kind}-migrated"), Target.CANDIDATE).compile()
    path = tmp_path / f"{kind}-bundle.json"
    path.write_text(bundle.to_json())
    out = agent(migrated.host, "nft", tmp_path / f"{kind}-agent", "apply", str(path))
    answer = json.loads(out.stdout)
    assert answer["result"] == "applied", answer
    return answer


# --- comparing -----------------------------------------------------------------------------


_PROTO = {"icmp": {"icmp", "ipv6-icmp", "icmpv6", "1", "58"}, "tcp": {"tcp", "6"}}
_PROTO["udp"] = {"udp", "17"}


def _in_ports(port: int, spec: str) -> bool:
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


# matches no probe packet has: a routing header, hop limit 255 (probes leave with 64)
_NEVER_PROBES = {("-m", "rt"), ("--hl-eq", "255"), ("--ttl-eq", "255")} | {
    (f"--{end}-type", kind)
    for end in ("src", "dst")
    for kind in ("BROADCAST", "MULTICAST", "ANYCAST")
}  # and they are unicast
_TCP_FLAGS = {"FIN", "SYN", "RST", "PSH", "ACK", "URG"}
SPORTS = range(20000, 65536)  # where probes take their source ports from (probe_both)


def _syn_matches(mask: str, comp: str) -> bool:
    """Does a SYN (the probes' first packet) match `--tcp-flags MASK COMP`?"""

    def flags(text: str) -> set[str]:
        return _TCP_FLAGS if text == "ALL" else set() if text == "NONE" else set(text.split(","))

    return flags(mask) & {"SYN"} == flags(comp)


_ECHO = {"8", "echo-request", "128"}


_INPUT_CHAIN = re.compile(r"(?i)input|^IN_|[-2]fw$")
_FORWARD_CHAIN = re.compile(r"(?i)forward|^FWD_|frwd|-loc$")


def _on_path(chain: str, probe: Probe) -> bool:
    """Is a rule of `chain` on the probe's path? Built-in chains and the usual names of
    ufw's, firewalld's and shorewall's chains say; other chains may be on either."""
    if _INPUT_CHAIN.search(chain):
        return probe.path == "input"
    if _FORWARD_CHAIN.search(chain):
        return probe.path == "forward"
    return chain != "OUTPUT"


def _word_excludes(word: str, value: str, after: str, probe: Probe) -> bool | None:
    """True/False: the match `word value` does (not) exclude the probe; None: unknown."""
    if (word, value) in _NEVER_PROBES:
        return True
    if word in ("--icmp-type", "--icmpv6-type"):
        return value.split("/")[0] not in _ECHO
    if word == "--tcp-flags" and probe.proto == "tcp":
        return not _syn_matches(value, after)
    if word in ("--sport", "--sports", "--source-port", "--source-ports"):
        spans = [p.partition(":") for p in value.split(",")]
        return not any(int(lo) <= SPORTS[-1] and int(hi or lo) >= SPORTS[0] for lo, _, hi in spans)
    if word in ("-p", "--protocol"):
        return value not in ("all", "0") and value not in _PROTO[probe.proto]
    if word in ("--dport", "--dports", "--destination-port", "--destination-ports"):
        return probe.proto == "icmp" or not _in_ports(probe.port, value)
    if word in ("-s", "--source", "-d", "--destination"):
        addr = probe.src if word in ("-s", "--source") else probe.dst
        net = ipaddress.ip_network(value, strict=False)
        return net.version != probe.family or ipaddress.ip_address(addr) not in net
    return None


def _iptables_matches(words: list[str]) -> Iterator[tuple[str, str, str, bool]]:
    for i, word in enumerate(words[:-1]):
        after = words[i + 2] if i + 2 < len(words) else ""
        yield word, words[i + 1], after, i > 0 and words[i - 1] == "!"


_NFT_AS = {"dport": "--dport", "sport": "--sport", "saddr": "-s", "daddr": "-d"}
_NFT_AS |= {"l4proto": "-p", "protocol": "-p", "nexthdr": "-p", "type": "--icmp-type"}


def _nft_matches(words: list[str]) -> Iterator[tuple[str, str, str, bool]]:
    """nft's `tcp dport != 22`, `ip saddr 198.18.0.0/15`, `meta l4proto udp`, ... as the
    iptables options they mean (a set `{ ... }` stays unknown)."""
    for i, word in enumerate(words[:-1]):
        if word not in _NFT_AS:
            continue
        j, negate = i + 1, False
        if words[j] in ("==", "!="):
            negate, j = words[j] == "!=", j + 1
        if j >= len(words) or words[j].startswith("{"):
            continue
        if word in ("dport", "sport") and i > 0 and words[i - 1] in ("tcp", "udp"):
            yield "-p", words[i - 1], "", False
        yield _NFT_AS[word], words[j], "", negate


def loss_covers(text: str, probe: Probe) -> bool:
    """Could the dump line `text` (iptables-save, or nft as the report quotes it) match
    `probe`? Matches this does not know count as maybe."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    if not words:
        return True
    if words[-1] in ("masquerade", "MASQUERADE", "snat") or "SNAT" in words[-3:]:
        return False  # the backend routes back through the host: no reply needs SNAT
    nft = words[0] != "-A"
    chain = next((w[:-1] for w in words[:3] if w.endswith(":")), "") if nft else words[1]
    if chain and not _on_path(chain.removeprefix("filter_").removeprefix("nat_"), probe):
        return False
    for word, value, after, negate in (_nft_matches if nft else _iptables_matches)(words):
        excludes = _word_excludes(word, value, after, probe)
        if excludes is not None and excludes != negate:
            return False
    return True


def _dnat_targets(report: dict) -> list[tuple[str, str]]:
    """(dports, to) of every DNAT in the dump: the imported ones and the lost ones."""
    out = [
        (",".join(n.get("dports", [])), n["to"])
        for n in report["document"]["rulesets"][0].get("nat", [])
        if n.get("type") == "dnat" and n.get("to")
    ]
    for s in report["skipped"]:
        m = re.search(r"--dports? (\S+) .*-j DNAT --to-destination (\S+)", s["text"])
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def as_seen(probe: Probe, report: dict) -> list[Probe]:
    """The probe, and what it becomes after a DNAT of the dump (the filter rules of a port
    forward see the new destination: FORWARD, the backend's address and port)."""
    out = [probe]
    for ports, to in _dnat_targets(report):
        if probe.proto != "icmp" and (not ports or _in_ports(probe.port, ports.replace("-", ":"))):
            host, _, port = to.rpartition(":") if to.count(":") == 1 else (to, "", "")
            dport = int(port.split("-")[0]) if port else probe.port
            out.append(Probe(probe.proto, probe.src, host or to, dport, "forward"))
    return out


def flagged(probe: Probe, before: str, after: str, reports: dict[int, dict]) -> list[dict]:
    """The report's verdict-changing losses that explain this disagreement."""
    report = reports.get(probe.family) or reports[4]
    if before == "accepted":
        wanted = RESTRICTIVE
    elif after == "accepted":
        wanted = PERMISSIVE
    else:
        wanted = ""  # both refuse, differently: any verdict-changing loss on the packet
    seen = as_seen(probe, report)
    return [
        loss
        for loss in report["losses"]
        if wanted in loss["impact"] and any(loss_covers(loss["text"], p) for p in seen)
    ]


@dataclass
class Outcome:
    kind: str
    probes: int = 0
    agree: int = 0
    flagged: list[tuple[str, str, str, list[str]]] = field(default_factory=list)
    unflagged: list[tuple[str, str, str]] = field(default_factory=list)
    seen: Counter = field(default_factory=Counter)  # the original host's verdicts

    @property
    def agreement(self) -> float:
        return 100.0 * self.agree / self.probes if self.probes else 0.0

    def row(self) -> str:
        return (
            f"{self.kind:<20} {self.probes:>6} {self.agree:>6} {len(self.flagged):>8} "
            f"{len(self.unflagged):>10} {self.agreement:>10.2f}   "
            + " ".join(f"{self.seen[v]}" for v in CLASSES)
        )


def compare(kind: str, sample: list[Probe], before: list[str], after: list[str],
            reports: dict[int, dict]) -> Outcome:  # fmt: skip
    out = Outcome(kind, probes=len(sample), seen=Counter(before))
    for p, b, a in zip(sample, before, after, strict=True):
        if a == b:
            out.agree += 1
            continue
        losses = flagged(p, b, a, reports)
        if losses:
            out.flagged.append((p.key(), b, a, [f"line {x['line']}: {x['text']}" for x in losses]))
        else:
            out.unflagged.append((p.key(), b, a))
    return out


CLASSES = ("accepted", "refused-reset", "rejected-icmp", "dropped-timeout")
HEADER = (
    f"{'host kind':<20} {'probes':>6} {'agree':>6} {'flagged':>8} {'unflagged':>10} "
    f"{'agreement%':>10}   original: accepted/reset/icmp/dropped"
)


def table(outcomes: list[Outcome]) -> str:
    total = Outcome("overall")
    for o in outcomes:
        total.probes += o.probes
        total.agree += o.agree
        total.flagged += o.flagged
        total.unflagged += o.unflagged
        total.seen += o.seen
    lines = [HEADER, *(o.row() for o in outcomes), total.row()]
    for o in outcomes:
        for key, b, a, losses in o.flagged:
            lines.append(f"  {o.kind}: flagged {key}: {b} -> {a} ({'; '.join(losses)})")
        for key, b, a in o.unflagged:
            lines.append(f"  {o.kind}: UNFLAGGED {key}: {b} -> {a}")
    return "\n".join(lines)
