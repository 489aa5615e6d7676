"""The agent's HTTPS API: every request signed by the console, every answer by the agent.

stdlib only (`http.server` + `ssl`): nothing to install on a managed host. Many servers can
run in one process (`serve_fleet`) for the console's fleet benchmark.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import socketserver
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rampart_agent import intake, protocol
from rampart_agent.dataplane import DataplaneError
from rampart_agent.engine import Engine
from rampart_agent.errors import AgentError
from rampart_agent.generation import (
    RECHECK_SECONDS,
    StatusGeneration,
    conditional_status,
    parse_since,
)
from rampart_agent.state import LAST_ROLLBACK_FILE, LIVE_FILE, StateDir

log = logging.getLogger("rampart.agent.http")

FLEET_POLL_INTERVAL = 10.0  # seconds a fleet server may take to notice shutdown()


class AgentHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self,
        address: tuple[str, int],
        engine: Engine,
        state: StateDir,
        limits: intake.Limits | None = None,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self.engine = engine
        self.state = state
        # `?since=G` status answers (generation.py)
        self.generation = StatusGeneration(recheck_seconds, engine.clock.monotonic)
        self.nonces = protocol.NonceCache()
        self.limits = limits or intake.Limits()
        self.budget = intake.ReadBudget(self.limits.max_read_bytes)
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)
        self.agent_key = state.ensure_identity()
        super().__init__(address, Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # Ed25519 certificates need TLS 1.3
        ctx.load_cert_chain(state.cert_path, state.key_path)
        self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (10 s where no resolver answers)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Over `max_connections` a new connection is closed at once (no TLS handshake, no
        thread): a flood cannot make the agent hold more than the cap."""
        if not self._slots.acquire(blocking=False):
            log.warning(
                "closed a connection from %s: %d connections open (--max-connections)",
                client_address[0],
                self.limits.max_connections,
            )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class Handler(BaseHTTPRequestHandler):
    server: AgentHTTPServer
    protocol_version = "HTTP/1.1"
    # A new connection must complete its TLS handshake and send its first request's
    # headers without a 10 s silence and within Limits.header_seconds in all, or it is
    # closed: it holds one of --max-connections (intake.GuardedReader). Once a request is
    # authenticated, a kept-alive connection may idle for 120 s.
    timeout = 10
    idle_timeout = 120
    server_version = "rampart-agent"
    sys_version = ""
    # Headers and body go out as two writes; without TCP_NODELAY a kept-alive client waits
    # ~40 ms for the delayed ACK before the body follows (measured by the deploy bench).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        # When this connection was accepted (its thread starts right after): a confirm is
        # taken only on a connection opened after the apply (Engine.confirm).
        self.opened_at = self.server.engine.clock.monotonic()
        super().setup()
        self.rfile.close()  # the socket's own reader, replaced by the guarded one
        self.guard = intake.GuardedReader(self.connection, self.timeout)
        self.guard.expect_headers(self.server.limits)
        self.rfile = io.BufferedReader(self.guard)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str) -> None:
        self._nonce = ""  # the request's nonce once its headers passed: signs the answer
        try:
            body = self._read_signed(method)
            status, answer = 200, self._route(method, body)
        except AgentError as exc:
            status, answer = exc.status, exc.body
            log.warning(
                "refused %s %s from %s: %s (%d)",
                method,
                self.path,
                self.client_address[0],
                exc,
                exc.status,
            )
        except DataplaneError as exc:
            status, answer = 500, {"error": str(exc)}
            log.error("%s %s failed: %s", method, self.path, exc)
        except RecursionError:
            status, answer = 400, {"error": "body is nested too deeply"}
        except Exception as exc:  # the server must answer, whatever broke
            log.exception("%s %s crashed", method, self.path)
            status, answer = 500, {"error": f"internal error: {exc.__class__.__name__}"}
        # an answer to a request whose signature did not verify is signed without a nonce
        self._reply(status, answer, "" if status == 401 else self._nonce)

    def _read_signed(self, method: str) -> bytes:
        """The body of a request signed by the console. Whatever the headers alone can
        refuse is refused before a body byte is read (the connection is then closed: its
        unread body cannot be taken for the next request); see intake.py."""
        server = self.server
        now = server.engine.clock.time()
        keep_alive = not self.close_connection
        self.close_connection = True  # until the body is read
        length = intake.content_length(method, self.path, self.headers, server.limits)
        console_key = server.state.console_key()
        if console_key is None:
            raise AgentError(401, "agent is not enrolled (no console key)")
        _, nonce, _ = intake.check_headers(self.headers, server.nonces, now=now)
        self._nonce = nonce
        if not server.budget.take(length):
            raise AgentError(503, "agent busy reading other requests; try again")
        try:
            self.guard.expect_body(length, server.limits)
            body = self.rfile.read(length) if length else b""
        except TimeoutError as exc:  # a peer that stalls or trickles the body
            raise AgentError(408, f"body not received in time ({exc})") from exc
        finally:
            server.budget.give(length)
        if len(body) != length:
            raise AgentError(400, f"body ended after {len(body)} of {length} bytes")
        try:
            ts, _ = protocol.verify_request(
                console_key, method, self.path, body, dict(self.headers.items()), now=now
            )
            server.nonces.check_and_add(nonce, ts, now=now)
        except protocol.ProtocolError as exc:
            raise AgentError(exc.status, str(exc)) from exc
        # the console's: its connection may stay open (an unsigned one never does)
        self.close_connection = not keep_alive
        self.guard.trust(self.idle_timeout)
        return body

    def _route(self, method: str, body: bytes) -> dict[str, Any]:
        engine = self.server.engine
        path, _, query = self.path.partition("?")
        if method == "GET" and path == protocol.PATH_STATUS:
            # the query (`since=G`) is part of the signed path: a replayed or altered one
            # does not verify
            try:
                since = parse_since(query)
            except ValueError as exc:
                raise AgentError(400, str(exc)) from exc
            answer = conditional_status(
                self.server.generation, since, self._records_key, engine.status
            )
            # `peer`: where the console's connection came from, so it can check that the
            # management sources cover it (behind a NAT it is not the console's own address)
            return {**answer, "peer": self.client_address[0]}
        if method != "POST" or self.path not in (
            protocol.PATH_APPLY,
            protocol.PATH_CONFIRM,
            protocol.PATH_ROLLBACK,
        ):
            raise AgentError(404, f"no such endpoint: {method} {self.path}")
        try:
            data = json.loads(body or b"{}")
        except RecursionError as exc:
            raise AgentError(400, "body is not JSON: nested too deeply") from exc
        except ValueError as exc:
            raise AgentError(400, f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise AgentError(400, "body must be a JSON object")
        if self.path == protocol.PATH_APPLY:
            return engine.apply(data)
        if self.path == protocol.PATH_CONFIRM:
            version = data.get("version")
            if not isinstance(version, int):
                raise AgentError(400, "'version' must be an integer")
            return engine.confirm(version, opened_at=self.opened_at)
        return engine.rollback("rollback requested by the console")

    def _records_key(self) -> str:
        """What the agent's records say without a kernel read: an apply, confirm, rollback
        or a wait for the xtables lock changes it (generation.py)."""
        state, engine = self.server.state, self.server.engine
        live = state.read_json(LIVE_FILE)
        rollback = state.read_json(LAST_ROLLBACK_FILE)
        return json.dumps([live, rollback, engine.dp.activity, engine.needs_full], default=str)

    def _reply(self, status: int, answer: dict[str, Any], nonce: str) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header(
            protocol.HEADER_SIGNATURE,
            protocol.sign_response(self.server.agent_key, status, data, nonce),
        )
        try:
            self.end_headers()
            self.wfile.write(data)
        except OSError as exc:  # SSLEOFError, reset: the client gave up first (its timeout)
            self.close_connection = True
            log.warning(
                "%s %s: the client left before the answer (%d) was sent: %s",
                self.command,
                self.path,
                status,
                exc.__class__.__name__,
            )


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host.strip("[]") or "0.0.0.0", int(port))


def make_server(
    engine: Engine,
    state: StateDir,
    listen: str,
    limits: intake.Limits | None = None,
    recheck_seconds: float = RECHECK_SECONDS,
) -> AgentHTTPServer:
    return AgentHTTPServer(parse_listen(listen), engine, state, limits, recheck_seconds)


def serve_fleet(
    engines: list[tuple[Engine, StateDir]], host: str, base_port: int, *, spread_hosts: bool = False
) -> list[AgentHTTPServer]:
    """Start one HTTPS server per engine on consecutive ports (any free port if base_port
    is 0), or with `spread_hosts` on consecutive addresses from `host` and one port, each
    in a thread; small thread stacks so 1,000 agents fit in one process."""
    threading.stack_size(512 * 1024)
    servers = []
    for i, (engine, state) in enumerate(engines):
        if spread_hosts:
            address = (str(ipaddress.IPv4Address(host) + i), base_port)
        else:
            address = (host, base_port + i if base_port else 0)
        server = AgentHTTPServer(address, engine, state)
        # a server wakes every poll_interval to look for shutdown(): at the default 0.5 s
        # 1,000 idle servers cost 4% of a core, 10 processes of them 0.4 of the 2 bench CPUs
        threading.Thread(
            target=server.serve_forever, args=(FLEET_POLL_INTERVAL,), name=f"agent-{i}", daemon=True
        ).start()
        servers.append(server)
    return servers
