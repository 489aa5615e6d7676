"""A steady UDP stream through a firewall change (stdlib only; run inside a namespace).

udp_stream.py recv HOST PORT...          counts datagrams per port; prints "ready"
udp_stream.py send HOST INTERVAL PORT...  one datagram to each port every INTERVAL seconds

Both run until their standard input is closed, then print a JSON object: port -> count.
"""

import json
import socket
import sys
import threading
import time


def recv(host: str, ports: list[int]) -> dict[int, int]:
    counts = dict.fromkeys(ports, 0)
    stop = threading.Event()

    def count(port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((host, port))
            sock.settimeout(0.05)
            ready.release()
            while not stop.is_set():
                try:
                    sock.recv(64)
                except TimeoutError:
                    continue
                counts[port] += 1

    ready = threading.Semaphore(0)
    threads = [threading.Thread(target=count, args=(p,)) for p in ports]
    for t in threads:
        t.start()
    for _ in ports:
        ready.acquire()
    print("ready", flush=True)
    sys.stdin.read()
    time.sleep(0.2)  # the last datagrams in flight
    stop.set()
    for t in threads:
        t.join()
    return counts


def send(host: str, interval: float, ports: list[int]) -> dict[int, int]:
    counts = dict.fromkeys(ports, 0)
    stop = threading.Event()

    def run() -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            next_at = time.monotonic()
            while not stop.is_set():
                for port in ports:
                    sock.sendto(b"rampart-stream", (host, port))
                    counts[port] += 1
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=run)
    thread.start()
    print("ready", flush=True)
    sys.stdin.read()
    stop.set()
    thread.join()
    return counts


if __name__ == "__main__":
    if sys.argv[1] == "recv":
        out = recv(sys.argv[2], [int(p) for p in sys.argv[3:]])
    else:
        out = send(sys.argv[2], float(sys.argv[3]), [int(p) for p in sys.argv[4:]])
    print(json.dumps(out), flush=True)
