"""Test hosts in Linux network namespaces.

Every namespace made here is named `rpt_*`, addressed from 198.18.0.0/15 and 2001:2::/48,
and deleted when its context ends, so the root namespace's firewall is never touched.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROBE = str(Path(__file__).with_name("probe.py"))
_counter = itertools.count(1)

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to create network namespaces (CI runs as root)",
)
needs_netns = [pytest.mark.netns, needs_root]


def unique(tag: str) -> str:
    """A short unique `rpt_` name (interface names are limited to 15 characters)."""
    return f"rpt_{tag[:4]}{os.getpid() % 10000}_{next(_counter)}"


def sh(*cmd: str, check: bool = True, input: str | None = None, timeout: float = 60):
    return subprocess.run(
        list(cmd), check=check, input=input, capture_output=True, text=True, timeout=timeout
    )


@dataclass
class Netns:
    """One network namespace; `run` executes a command inside it."""

    name: str
    addr4: str = ""
    addr6: str = ""
    _procs: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *cmd: str, check: bool = True, input: str | None = None, timeout: float = 60):
        return sh("ip", "netns", "exec", self.name, *cmd, check=check, input=input, timeout=timeout)

    def popen(self, *cmd: str, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kwargs)
        self._procs.append(proc)
        return proc

    def listen(self, tcp: Sequence[int] = (), udp: Sequence[int] = ()) -> subprocess.Popen:
        """Start TCP accept / UDP echo servers on all addresses of this namespace."""
        args = [f"tcp:{p}" for p in tcp] + [f"udp:{p}" for p in udp]
        proc = self.popen(sys.executable, PROBE, "serve", *args, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    def probe(self, probes: Sequence[dict], timeout: float = 0.4) -> list[bool]:
        """Run probes ({proto: tcp|udp, host, port, sport?}) from here; True = got through."""
        out = self.run(
            sys.executable, PROBE, "probe", str(timeout), input=json.dumps(list(probes))
        ).stdout
        return json.loads(out)

    def tcp_ok(self, host: str, port: int, timeout: float = 0.4) -> bool:
        return self.probe([{"proto": "tcp", "host": host, "port": port}], timeout)[0]

    def udp_ok(self, host: str, port: int, timeout: float = 0.4) -> bool:
        return self.probe([{"proto": "udp", "host": host, "port": port}], timeout)[0]

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        sh("ip", "netns", "delete", self.name, check=False)


@contextmanager
def namespace(tag: str = "ns") -> Iterator[Netns]:
    """One isolated namespace with loopback up."""
    ns = Netns(unique(tag))
    sh("ip", "netns", "add", ns.name)
    try:
        ns.run("ip", "link", "set", "lo", "up")
        ns.run(
            "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"
        )
        yield ns
    finally:
        ns.close()


_subnet = itertools.count(1)


@contextmanager
def host_pair(tag: str = "hp") -> Iterator[tuple[Netns, Netns]]:
    """Two namespaces joined by a veth: (client, server).

    client is 198.18.N.1 / 2001:2:0:N::1, server 198.18.N.2 / 2001:2:0:N::2, with N unique
    within this test process (and salted by pid so parallel runs do not collide).
    """
    n = (os.getpid() * 7 + next(_subnet)) % 250 + 1
    with namespace(tag + "c") as client, namespace(tag + "s") as server:
        veth_c, veth_s = f"rc{n}_{os.getpid() % 1000}", f"rs{n}_{os.getpid() % 1000}"
        sh(
            "ip",
            "link",
            "add",
            veth_c,
            "netns",
            client.name,
            "type",
            "veth",
            "peer",
            "name",
            veth_s,
            "netns",
            server.name,
        )
        for ns, dev, host in ((client, veth_c, 1), (server, veth_s, 2)):
            ns.addr4, ns.addr6 = f"198.18.{n}.{host}", f"2001:2:0:{n:x}::{host}"
            ns.run("ip", "addr", "add", f"{ns.addr4}/24", "dev", dev)
            ns.run("ip", "-6", "addr", "add", f"{ns.addr6}/64", "dev", dev, "nodad")
            ns.run("ip", "link", "set", dev, "up")
            ns.dev = dev  # type: ignore[attr-defined]
        for _ in range(30):  # wait until neighbour discovery works both ways
            if client.run("ping", "-6", "-c1", "-W1", server.addr6, check=False).returncode == 0:
                break
        yield client, server


CONNECT = (
    "import json, socket, sys\n"
    "out = []\n"
    "for host, port in json.loads(sys.argv[1]):\n"
    "    s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)\n"
    "    s.settimeout(0.5)\n"
    "    out.append(s.connect_ex((host, port)))\n"
    "    s.close()\n"
    "print(json.dumps(out))\n"
)


def connect(client: Netns, targets: list[tuple[str, int]]) -> list[int]:
    """One TCP connect per (host, port) from `client`: the errno each got (0: accepted)."""
    return json.loads(client.run(sys.executable, "-c", CONNECT, json.dumps(targets)).stdout)
