"""Traffic helper run inside a test namespace (stdlib only).

probe.py serve tcp:80 udp:53 ...   accept TCP connections, echo UDP datagrams; prints "ready"
probe.py probe TIMEOUT < probes.json   prints a JSON list of booleans (True = answered)
"""

import json
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor


def _serve_tcp(family: int, port: int) -> None:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    sock.listen(256)
    while True:
        conn, _ = sock.accept()
        conn.close()


def _serve_udp(family: int, port: int) -> None:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(data, peer)


def serve(specs: list[str]) -> None:
    for spec in specs:
        proto, port = spec.split(":")
        for family in (socket.AF_INET, socket.AF_INET6):
            target = _serve_tcp if proto == "tcp" else _serve_udp
            threading.Thread(target=target, args=(family, int(port)), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def _one(p: dict, timeout: float) -> bool:
    family = socket.AF_INET6 if ":" in p["host"] else socket.AF_INET
    kind = socket.SOCK_STREAM if p["proto"] == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(timeout)
        if p.get("sport"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", int(p["sport"])))
        try:
            sock.connect((p["host"], int(p["port"])))
            if kind == socket.SOCK_DGRAM:
                sock.send(b"rampart-probe")
                return sock.recv(64) == b"rampart-probe"
            return True
        except OSError:
            return False


def probe(timeout: float) -> None:
    probes = json.load(sys.stdin)
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda p: _one(p, timeout), probes))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2:])
    else:
        probe(float(sys.argv[2]))
