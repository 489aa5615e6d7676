"""Requests refused from their headers alone, malformed ones answered 400 (never 500), and
the connection and read caps, over raw TLS sockets to an in-process agent."""

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time

import pytest

from rampart_agent import protocol
from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.engine import Engine
from rampart_agent.intake import Limits
from rampart_agent.server import Handler, make_server
from rampart_agent.state import StateDir


@pytest.fixture
def agent(tmp_path, request):
    limits = getattr(request, "param", None) or Limits()
    state = StateDir(tmp_path)
    state.ensure_identity()
    console = protocol.generate_private_key()
    state.set_console_key(protocol.public_key_b64(console))
    dp = RecordingDataplane()
    engine = Engine(state, dp)
    engine.start()
    server = make_server(engine, state, "127.0.0.1:0", limits)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield Raw(server.server_address[1], console), dp
    server.shutdown()
    server.server_close()
    engine.shutdown()


class Raw:
    """Hand-written HTTP over TLS: headers and bodies no client library would send."""

    def __init__(self, port, console):
        self.port = port
        self.console = console

    def connect(self, timeout=10):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port), timeout=timeout))

    def signed(self, method, path, body=b"", **kw):
        return protocol.sign_request(self.console, method, path, body, **kw)

    def send(self, method, path, headers, body=b"", sock=None):
        """Send; return (status, JSON answer, seconds to the answer)."""
        sock = sock or self.connect()
        head = f"{method} {path} HTTP/1.1\r\nHost: agent\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        t0 = time.monotonic()
        sock.sendall(head.encode() + body)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        answer = json.loads(resp.read())
        return resp.status, answer, time.monotonic() - t0


def test_malformed_content_length_and_deep_json_are_400(agent):
    raw, dp = agent
    body = b'{"version": 1}'
    hdrs = raw.signed("POST", "/v1/confirm", body)
    status, answer, _ = raw.send("POST", "/v1/confirm", {**hdrs, "Content-Length": "abc"}, body)
    assert status == 400 and "Content-Length must be a number" in answer["error"]
    status, answer, _ = raw.send("POST", "/v1/confirm", {**hdrs, "Content-Length": "-5"}, body)
    assert status == 400
    status, answer, _ = raw.send("POST", "/v1/confirm", raw.signed("POST", "/v1/confirm"))
    assert status == 411 and "Content-Length" in answer["error"]
    sock = raw.connect()
    head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    sock.sendall(
        f"POST /v1/confirm HTTP/1.1\r\n{head}Content-Length: 14\r\nContent-Length: 0\r\n\r\n".encode()
        + body
    )
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    assert resp.status == 400 and "more than one" in json.loads(resp.read())["error"]
    deep = b"[" * 10_000 + b"]" * 10_000
    for path in ("/v1/confirm", "/v1/apply"):
        hdrs = raw.signed("POST", path, deep)
        status, answer, _ = raw.send("POST", path, {**hdrs, "Content-Length": len(deep)}, deep)
        assert status == 400 and "nested too deeply" in answer["error"], answer
    assert dp.payloads == []


def test_refused_from_the_headers_before_any_body_byte(agent):
    """Each request declares a large body and sends none: an answer at once proves the
    agent did not wait for (or read) the body."""
    raw, _ = agent
    big = {"Content-Length": str(60 * 1024 * 1024)}
    cases = [
        ("/v1/apply", big, 401, "missing signature headers"),
        (
            "/v1/apply",
            {
                **big,
                "X-Rampart-Timestamp": "1",
                "X-Rampart-Nonce": "0" * 32,
                "X-Rampart-Signature": "A" * 86 + "==",
            },
            401,
            "timestamp outside",
        ),
        (
            "/v1/apply",
            {**big, **raw.signed("POST", "/v1/apply"), protocol.HEADER_SIGNATURE: "not base64!"},
            401,
            "malformed",
        ),
        (
            "/v1/apply",
            {"Content-Length": str(65 * 1024 * 1024), **raw.signed("POST", "/v1/apply")},
            413,
            "over the",
        ),
        (
            "/v1/confirm",
            {"Content-Length": "70000", **raw.signed("POST", "/v1/confirm")},
            413,
            "65536-byte limit",
        ),
        (
            "/v1/apply",
            {**big, **raw.signed("POST", "/v1/apply"), "Transfer-Encoding": "chunked"},
            411,
            "Transfer-Encoding",
        ),
    ]
    for path, headers, want, text in cases:
        status, answer, took = raw.send("POST", path, headers)
        assert (status, took < 2) == (want, True), (path, headers, answer)
        assert text in answer["error"], answer
    # a replayed nonce is refused before its body too
    body = b'{"version": 1}'
    hdrs = raw.signed("POST", "/v1/confirm", body)
    status, _, _ = raw.send("POST", "/v1/confirm", {**hdrs, "Content-Length": len(body)}, body)
    assert status == 409  # not pending; the nonce is now used
    status, answer, took = raw.send("POST", "/v1/confirm", {**hdrs, "Content-Length": "60000"})
    assert status == 409 and "nonce already used" in answer["error"] and took < 2


@pytest.mark.parametrize("agent", [Limits(max_read_bytes=4096)], indirect=True)
def test_bodies_over_the_read_budget_wait_for_nothing(agent):
    raw, _ = agent
    hdrs = raw.signed("POST", "/v1/apply", b"x" * 5000)
    status, answer, took = raw.send("POST", "/v1/apply", {**hdrs, "Content-Length": "5000"})
    assert status == 503 and "busy" in answer["error"] and took < 2
    status, answer, _ = raw.send("GET", "/v1/status", raw.signed("GET", "/v1/status"))
    assert status == 200, answer


@pytest.mark.parametrize("agent", [Limits(max_connections=2)], indirect=True)
def test_connections_over_the_cap_are_closed_and_silent_ones_time_out(agent, monkeypatch):
    raw, _ = agent
    monkeypatch.setattr(Handler, "timeout", 0.5)  # 10 s in production
    held = [raw.connect(), raw.connect()]  # silent, each holding a slot
    time.sleep(0.1)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        extra = raw.connect(timeout=5)
        extra.sendall(b"GET /v1/status HTTP/1.1\r\n\r\n")
        if not extra.recv(1):
            raise ConnectionError("closed")
    time.sleep(1.0)  # the silent ones are closed by the agent: their slots are free
    for sock in held:
        assert sock.recv(1) == b""
    status, _, _ = raw.send("GET", "/v1/status", raw.signed("GET", "/v1/status"))
    assert status == 200
    for sock in held:
        sock.close()


def _closed_within(sock, seconds: float) -> float:
    """Seconds until the agent closed `sock` (EOF or reset), failing after `seconds`."""
    t0 = time.monotonic()
    sock.settimeout(seconds)
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        assert sock.recv(1) == b""
    return time.monotonic() - t0


@pytest.mark.parametrize("agent", [Limits(header_seconds=1.0)], indirect=True)
def test_headers_trickled_under_the_silence_timeout_are_cut_at_the_deadline(agent, monkeypatch):
    """A byte every 0.2 s never trips the 0.5 s silence timeout; the headers deadline still
    closes the connection, so a trickling peer cannot hold a slot for ever."""
    raw, _ = agent
    monkeypatch.setattr(Handler, "timeout", 0.5)
    sock = raw.connect()
    sock.sendall(b"GET /v1/status HTTP/1.1\r\n")
    t0 = time.monotonic()
    with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
        while time.monotonic() - t0 < 4:
            sock.sendall(b"X")
            time.sleep(0.2)
    assert time.monotonic() - t0 < 2.5
    sock.close()


def test_headers_over_the_byte_limit_close_the_connection_unread(agent):
    """40 KB of headers before any signature: the connection is closed, not parsed."""
    raw, _ = agent
    sock = raw.connect()
    head = "".join(f"X-Pad-{i}: {'a' * 1000}\r\n" for i in range(40))
    sock.sendall(f"GET /v1/status HTTP/1.1\r\n{head}\r\n".encode())
    assert _closed_within(sock, 5) < 2
    status, _, _ = raw.send("GET", "/v1/status", raw.signed("GET", "/v1/status"))
    assert status == 200


@pytest.mark.parametrize("agent", [Limits(min_body_rate=1000)], indirect=True)
def test_a_trickled_body_is_cut_at_its_deadline_and_frees_the_budget(agent, monkeypatch):
    """Forged but well-formed headers, then 10 bytes every 0.2 s of a 1000-byte body: a 408
    at 0.5 s + 1000 B / 1000 B/s, not a read held open as long as the peer keeps sending."""
    raw, _ = agent
    monkeypatch.setattr(Handler, "timeout", 0.5)
    forged = protocol.sign_request(protocol.generate_private_key(), "POST", "/v1/confirm", b"")
    sock = raw.connect()
    head = "".join(f"{k}: {v}\r\n" for k, v in forged.items())
    sock.sendall(f"POST /v1/confirm HTTP/1.1\r\n{head}Content-Length: 1000\r\n\r\n".encode())
    t0 = time.monotonic()
    sock.settimeout(0.05)
    first = b""
    while time.monotonic() - t0 < 4 and not first:
        sock.sendall(b"x" * 10)
        try:
            first = sock.recv(200)
        except TimeoutError:
            time.sleep(0.15)
    took = time.monotonic() - t0
    sock.settimeout(2)
    answer = first
    while chunk := sock.recv(2000):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"not received in time" in answer and took < 3
    status, _, _ = raw.send("GET", "/v1/status", raw.signed("GET", "/v1/status"))
    assert status == 200
