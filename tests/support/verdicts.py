"""Probe verdicts, run inside a test namespace (stdlib only, root: raw ICMP sockets).

    verdicts.py TIMEOUT < probes.json   prints a JSON list of verdicts, one per probe

A probe is {proto: tcp|udp|icmp, src, dst, port?, sport?, id?}. Its verdict is one of
`accepted` (TCP connected, UDP echoed, ICMP echo answered), `refused-reset` (a TCP reset),
`rejected-icmp` (an ICMP/ICMPv6 error about this very packet) or `dropped-timeout`
(nothing within TIMEOUT). Linux reports both a TCP reset and an ICMP port-unreachable as
ECONNREFUSED, so raw sockets watch every ICMP error that arrives during the run and an
error quoting the probe's own addresses and ports makes it `rejected-icmp`. All probes run
at once (threads), so a run takes about TIMEOUT.
"""

from __future__ import annotations

import errno
import json
import select
import socket
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ERRORS4 = {3, 11, 12}  # destination unreachable, time exceeded, parameter problem
ERRORS6 = {1, 2, 3, 4}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class Watcher:
    """Collects the ICMP errors that arrive, keyed by the packet they quote."""

    def __init__(self) -> None:
        self.socks = [
            socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
            socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
        ]
        self.seen: set[tuple] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select(self.socks, [], [], 0.05)
            for sock in ready:
                data = sock.recv(4096)
                key = self.quote4(data) if sock.family == socket.AF_INET else self.quote6(data)
                if key:
                    self.seen.add(key)

    @staticmethod
    def quote4(data: bytes) -> tuple | None:
        outer = (data[0] & 0x0F) * 4
        if len(data) < outer + 8 + 20 or data[outer] not in ERRORS4:
            return None
        inner = data[outer + 8 :]
        ihl = (inner[0] & 0x0F) * 4
        proto, src, dst = inner[9], socket.inet_ntoa(inner[12:16]), socket.inet_ntoa(inner[16:20])
        return Watcher.key(proto, src, dst, inner[ihl : ihl + 8], icmp=1)

    @staticmethod
    def quote6(data: bytes) -> tuple | None:
        if len(data) < 8 + 40 or data[0] not in ERRORS6:
            return None
        inner = data[8:]
        src = socket.inet_ntop(socket.AF_INET6, inner[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, inner[24:40])
        return Watcher.key(inner[6], src, dst, inner[40:48], icmp=58)

    @staticmethod
    def key(proto: int, src: str, dst: str, head: bytes, icmp: int) -> tuple | None:
        if len(head) < 8:
            return None
        if proto in (6, 17):
            sport, dport = struct.unpack("!HH", head[:4])
            return ("tcp" if proto == 6 else "udp", src, dst, sport, dport)
        if proto == icmp:
            return ("icmp", src, dst, struct.unpack("!H", head[4:6])[0], 0)
        return None

    def quoted(self, p: dict) -> bool:
        return (p["proto"], p["src"], p["dst"], int(p.get("sport") or p.get("id") or 0),
                int(p.get("port") or 0)) in self.seen  # fmt: skip

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _stream(p: dict, timeout: float) -> str:
    fam = _family(p["dst"])
    kind = socket.SOCK_STREAM if p["proto"] == "tcp" else socket.SOCK_DGRAM
    with socket.socket(fam, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((p["src"], int(p["sport"])))
        sock.settimeout(timeout)
        try:
            sock.connect((p["dst"], int(p["port"])))
            if kind == socket.SOCK_DGRAM:
                sock.send(b"rampart-probe")
                if sock.recv(64) != b"rampart-probe":
                    return "error:echo"
            return "accepted"
        except TimeoutError:
            return "dropped-timeout"
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED and kind == socket.SOCK_STREAM:
                return "refused-reset"  # unless an ICMP error quotes it (see `run`)
            return "rejected-icmp" if exc.errno in _ICMP_ERRNOS else f"error:{exc.errno}"


_ICMP_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES,
                errno.EPERM, errno.EPROTO}  # fmt: skip


def _echo(p: dict, timeout: float) -> str:
    v6 = ":" in p["dst"]
    fam, proto = (
        (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    )
    ident = int(p["id"])
    with socket.socket(fam, socket.SOCK_RAW, proto) as sock:
        sock.bind((p["src"], 0))
        kind, reply = (128, 129) if v6 else (8, 0)
        head = struct.pack("!BBHHH", kind, 0, 0, ident, 1) + b"rampart-probe"
        if not v6:  # the kernel sums ICMPv6 itself
            head = head[:2] + struct.pack("!H", _checksum(head)) + head[4:]
        sock.sendto(head, (p["dst"], 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data = sock.recv(4096)
            icmp = data if v6 else data[(data[0] & 0x0F) * 4 :]
            if icmp[0] == reply and struct.unpack("!H", icmp[4:6])[0] == ident:
                return "accepted"
        return "dropped-timeout"


def run(probes: list[dict], timeout: float) -> list[str]:
    watcher = Watcher()
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(probes))) as pool:
            found = list(
                pool.map(lambda p: (_echo if p["proto"] == "icmp" else _stream)(p, timeout), probes)
            )
        time.sleep(0.05)  # the last errors still in the watcher's queue
    finally:
        watcher.close()
    return [
        "rejected-icmp" if v != "accepted" and watcher.quoted(p) else v
        for p, v in zip(probes, found, strict=True)
    ]


if __name__ == "__main__":
    json.dump(run(json.load(sys.stdin), float(sys.argv[1])), sys.stdout)
