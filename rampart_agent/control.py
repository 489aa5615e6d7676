"""The local control socket: break-glass commands run by the serving engine.

While `serve` owns the state directory (owner.py), `rampart-agent apply|rollback|restore|
confirm|status` send their work here instead of opening a second engine over the same
files. A Unix socket in the runtime directory (0700), itself 0600, and only peers whose
uid is root or the agent's own: the same trust as the local commands it stands for.
One JSON line each way: `{"command", "args"}` -> `{"status", "body"}`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import struct
import threading
from pathlib import Path
from typing import Any

from rampart_agent.dataplane import DataplaneError
from rampart_agent.engine import Engine
from rampart_agent.errors import AgentError
from rampart_agent.state import StateDir

log = logging.getLogger("rampart.agent.control")

CONTROL_SOCKET = "control.sock"
COMMANDS = ("apply", "rollback", "restore", "confirm", "status")
ANSWER_TIMEOUT = 600  # seconds: a break-glass apply of a large bundle may take a while


def socket_path(state: StateDir) -> Path:
    return state.run_path / CONTROL_SOCKET


def run_command(engine: Engine, command: str, args: dict[str, Any]) -> dict[str, Any]:
    """What the one-shot command would have done, by the serving engine."""
    if command == "apply":
        return engine.apply(args.get("request"), local=True)  # type: ignore[arg-type]
    if command == "rollback":
        return engine.rollback("local rollback")
    if command == "restore":
        return engine.start(serving=False)  # the tools are already kept ready
    if command == "confirm":
        version = args.get("version")
        if not isinstance(version, int):
            raise AgentError(400, "'version' must be an integer")
        return engine.confirm(version)
    if command == "status":
        return engine.status()
    raise AgentError(400, f"unknown command {command!r} (one of {', '.join(COMMANDS)})")


class _Handler(socketserver.StreamRequestHandler):
    server: ControlServer

    def handle(self) -> None:
        creds = self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        pid, uid, _ = struct.unpack("3i", creds)
        if uid not in (0, os.geteuid()):
            log.warning("control socket: refused pid %d (uid %d)", pid, uid)
            return
        line = self.rfile.readline(self.server.max_bytes + 1)
        try:
            if len(line) > self.server.max_bytes:
                raise AgentError(413, f"request over {self.server.max_bytes} bytes")
            try:
                message = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise AgentError(400, f"request is not JSON: {exc}") from exc
            if (
                not isinstance(message, dict)
                or not isinstance(message.get("command"), str)
                or not isinstance(message.get("args"), dict)
            ):
                raise AgentError(400, "request must be {command, args}")
            log.info("control socket: %s from pid %d", message["command"], pid)
            status, body = 200, run_command(self.server.engine, message["command"], message["args"])
        except AgentError as exc:
            status, body = exc.status, exc.body
        except DataplaneError as exc:
            status, body = 500, {"error": str(exc)}
        except Exception as exc:  # the command must get an answer, whatever broke
            log.exception("control socket: command crashed")
            status, body = 500, {"error": f"internal error: {exc.__class__.__name__}: {exc}"}
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps({"status": status, "body": body}).encode() + b"\n")


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, engine: Engine, max_bytes: int) -> None:
        self.engine = engine
        self.max_bytes = max_bytes
        self.path = path
        path.unlink(missing_ok=True)  # left by a killed owner: the owner lock is ours now
        old = os.umask(0o177)  # the socket is created 0600, with no window wider
        try:
            super().__init__(os.fspath(path), _Handler)
        finally:
            os.umask(old)

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name="control", daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.path.unlink(missing_ok=True)


def start_control(state: StateDir, engine: Engine, max_bytes: int) -> ControlServer | None:
    """The control socket, or None (logged) when it cannot be made: local commands then
    refuse to run beside `serve`, which keeps serving."""
    try:
        server = ControlServer(socket_path(state), engine, max_bytes)
    except OSError as exc:
        log.error(
            "no control socket at %s (%s): local commands will refuse", socket_path(state), exc
        )
        return None
    server.start()
    return server


def call(path: Path, command: str, args: dict[str, Any], timeout: float = ANSWER_TIMEOUT) -> Any:
    """Run `command` in the serving agent; its answer, or AgentError as it would have
    raised. OSError when the socket does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
        with sock.makefile("rb") as reader:
            line = reader.readline()
    if not line:
        raise OSError("the serving agent closed the control socket without an answer")
    answer = json.loads(line)
    if answer["status"] >= 400:
        body = answer["body"]
        raise AgentError(
            answer["status"],
            str(body.get("error")),
            **{k: v for k, v in body.items() if k != "error"},
        )
    return answer["body"]
