"""Pre-authentication memory: floods of large bodies against a real `serve` process.

Peak RSS (VmHWM) growth is bounded: unsigned bodies are refused from their headers and
never read; bodies under forged (well-formed) signature headers are read only within the
read budget. The console's signed requests are answered quickly meanwhile.
"""

import threading
import time

import pytest

from rampart_agent import protocol
from tests.rampart_agent.serve_proc import ServeProcess

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

MIB = 1024 * 1024
GROWTH_BOUND_KIB = 32 * 1024


def flood(agent: ServeProcess, count: int, size: int, headers: dict[str, str]) -> list[str]:
    """`count` connections at once, each declaring and sending a `size`-byte body; what
    each one saw (the agent's status line, or the error that ended the send)."""
    seen: list[str] = []
    chunk = b"x" * MIB

    def one() -> None:
        try:
            sock = agent.tls(timeout=30)
            head = "POST /v1/apply HTTP/1.1\r\nHost: agent\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            sock.sendall(f"{head}Content-Length: {size}\r\n\r\n".encode())
            for _ in range(size // MIB):
                sock.sendall(chunk)
            seen.append(sock.recv(64).decode(errors="replace").split("\r\n")[0])
        except OSError as exc:  # the agent closed the connection under the body
            seen.append(exc.__class__.__name__)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    return threads, seen


def signed_status_during(agent, threads) -> list[float]:
    took = []
    while any(t.is_alive() for t in threads) or not took:
        t0 = time.monotonic()
        assert agent.call("GET", "/v1/status", timeout=10).status_code == 200
        took.append(time.monotonic() - t0)
    for t in threads:
        t.join(60)
    return took


def test_unsigned_60mb_bodies_are_never_read(tmp_path):
    agent = ServeProcess(tmp_path / "agent")
    try:
        agent.call("GET", "/v1/status")
        before = agent.vm("VmHWM")
        threads, seen = flood(agent, 8, 60 * MIB, {})
        took = signed_status_during(agent, threads)
        growth = agent.vm("VmHWM") - before
        print(
            f"unsigned flood: VmHWM {before} KiB + {growth} KiB; status took max "
            f"{max(took):.3f} s; clients saw {sorted(set(seen))}"
        )
        assert growth < GROWTH_BOUND_KIB
        assert max(took) < 2.0
        assert len(seen) == 8
    finally:
        agent.stop()


def test_forged_signature_bodies_are_read_within_the_budget(tmp_path):
    """Well-formed, fresh signature headers that do not verify: the body must be read to
    know it, so at most --max-read-bytes of them are read at once; the rest answer 503."""
    agent = ServeProcess(tmp_path / "agent", "--max-read-bytes", str(8 * MIB))
    try:
        agent.call("GET", "/v1/status")
        before = agent.vm("VmHWM")
        forged = protocol.sign_request(protocol.generate_private_key(), "POST", "/v1/apply", b"")
        threads, seen = flood(agent, 8, 6 * MIB, forged)
        took = signed_status_during(agent, threads)
        growth = agent.vm("VmHWM") - before
        print(
            f"forged flood: VmHWM {before} KiB + {growth} KiB; status took max "
            f"{max(took):.3f} s; clients saw {sorted(set(seen))}"
        )
        assert growth < GROWTH_BOUND_KIB
        assert max(took) < 2.0
    finally:
        log = agent.stop()
    assert "bad signature (401)" in log and "agent busy reading" in log  # read, and refused
