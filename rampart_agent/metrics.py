"""The agent's Prometheus metrics: counted by the engine, served on a listener of their own.

Off by default; `rampart-agent serve --metrics-listen HOST:PORT` turns it on. The endpoint
is plain HTTP without authentication (what a Prometheus node target usually is), so it
never shares the signed HTTPS API's port and should be bound to loopback or a management
address. The agent's only dependency is `cryptography`: the Prometheus text format
(version 0.0.4) is a few lines, written here instead of pulling in prometheus-client.
Label values are bounded sets (apply results, rollback reasons as classes, families),
never bundle content or free text.
"""

from __future__ import annotations

import functools
import logging
import math
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from rampart_agent.bundle import Bundle
from rampart_agent.errors import AgentError
from rampart_agent.state import LIVE_FILE, StateDir

log = logging.getLogger("rampart.agent.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
APPLY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LOCK_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Rollback reasons (engine.py, server.py, control.py) as a bounded label: the first
# matching prefix names the class; anything else is "other".
ROLLBACK_CLASSES = (
    ("no confirm", "confirm_timeout"),
    ("probe failed", "probe"),
    ("apply failed", "apply_error"),
    ("interrupted apply", "interrupted"),
    ("agent restarted", "restart"),
    ("host restarted", "restart"),
    ("rollback requested", "requested"),
    ("local rollback", "requested"),
)
FAMILIES = ("v4", "v6")


def rollback_class(reason: str) -> str:
    """The label value for a rollback reason (free text never becomes a label)."""
    lowered = reason.lower()
    for prefix, name in ROLLBACK_CLASSES:
        if lowered.startswith(prefix):
            return name
    return "other"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: dict[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items()) + "}"


class _Histogram:
    """Cumulative buckets, sum and count per label value (one label at most)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.series: dict[tuple[tuple[str, str], ...], list[float]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        row = self.series.setdefault(key, [0.0] * (len(self.buckets) + 2))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                row[i] += 1
        row[-2] += value  # sum
        row[-1] += 1  # count (the +Inf bucket)

    def lines(self, name: str) -> list[str]:
        out = []
        for key, row in sorted(self.series.items()):
            labels = dict(key)
            for bound, count in zip(self.buckets, row, strict=False):
                le = _labels({**labels, "le": repr(float(bound))})  # 10.0, as prometheus-client
                out.append(f"{name}_bucket{le} {_number(count)}")
            out.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {_number(row[-1])}")
            out.append(f"{name}_sum{_labels(labels)} {_number(row[-2])}")
            out.append(f"{name}_count{_labels(labels)} {_number(row[-1])}")
        return out


class AgentMetrics:
    """What the engine counts (thread-safe); `render` writes it with the live record."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.apply_seconds = _Histogram(APPLY_BUCKETS)
        self.lock_wait_seconds = _Histogram(LOCK_BUCKETS)
        self.applies: dict[str, int] = {}
        self.rollbacks: dict[str, int] = {}
        self.last_success = 0.0
        self.rules = dict.fromkeys(FAMILIES, 0)
        self.sets = 0
        self.set_entries = 0
        self.started = time.time()

    def apply_finished(self, result: str, seconds: float, at: float) -> None:
        """One apply answered: `result` is its answer's (applied, unchanged, failed,
        rolled_back, ...); applied and unchanged count as a success at `at`."""
        with self._lock:
            self.apply_seconds.observe(seconds, result=result)
            self.applies[result] = self.applies.get(result, 0) + 1
            if result in ("applied", "unchanged"):
                self.last_success = at

    def lock_waited(self, seconds: float) -> None:
        """Seconds a kernel change waited for another program's xtables lock."""
        with self._lock:
            self.lock_wait_seconds.observe(seconds)

    def rolled_back(self, reason: str) -> None:
        with self._lock:
            name = rollback_class(reason)
            self.rollbacks[name] = self.rollbacks.get(name, 0) + 1

    def loaded(self, bundle: Bundle) -> None:
        """The bundle the kernel now holds (after an apply, a rollback or the start)."""
        rules = {
            family: sum(
                len(lines)
                for table in bundle.tables.get(family, {}).values()
                for lines in table.chains.values()
            )
            for family in FAMILIES
        }
        with self._lock:
            self.rules = rules
            self.sets = len(bundle.sets)
            self.set_entries = sum(bundle.set_entries.values())

    def render(self, live: dict[str, Any], now: float) -> str:
        """The text exposition; `live` is the live record (its confirm deadline)."""
        deadline = live.get("deadline") if not live.get("confirmed", True) else None
        left = max(float(deadline) - now, 0.0) if deadline is not None else 0.0
        with self._lock:
            out = [
                *_family(
                    "rampart_agent_apply_duration_seconds",
                    "histogram",
                    "Time to answer an apply, by result.",
                ),
                *self.apply_seconds.lines("rampart_agent_apply_duration_seconds"),
                *_family("rampart_agent_applies_total", "counter", "Applies answered, by result."),
                *(
                    f"rampart_agent_applies_total{_labels({'result': r})} {n}"
                    for r, n in sorted(self.applies.items())
                ),
                *_family("rampart_agent_rollbacks_total", "counter", "Rollbacks, by reason class."),
                *(
                    f"rampart_agent_rollbacks_total{_labels({'reason': r})} {n}"
                    for r, n in sorted(self.rollbacks.items())
                ),
                *_family(
                    "rampart_agent_xtables_lock_wait_seconds",
                    "histogram",
                    "Time a kernel change waited for another program's xtables lock.",
                ),
                *self.lock_wait_seconds.lines("rampart_agent_xtables_lock_wait_seconds"),
                *_gauge(
                    "rampart_agent_confirm_pending",
                    "1 while an applied bundle awaits the console's confirm.",
                    1 if deadline is not None else 0,
                ),
                *_gauge(
                    "rampart_agent_confirm_deadline_seconds",
                    "Seconds until the pending bundle is rolled back (0: none pending).",
                    left,
                ),
                *_gauge(
                    "rampart_agent_last_apply_success_timestamp_seconds",
                    "Unix time of the last apply answered applied or unchanged (0: none yet).",
                    self.last_success,
                ),
                *_family(
                    "rampart_agent_rules_loaded",
                    "gauge",
                    "Rule lines in the agent's chains the kernel holds, by family.",
                ),
                *(
                    f"rampart_agent_rules_loaded{_labels({'family': f})} {n}"
                    for f, n in self.rules.items()
                ),
                *_gauge(
                    "rampart_agent_sets_loaded", "Sets of the bundle the kernel holds.", self.sets
                ),
                *_gauge(
                    "rampart_agent_set_entries_loaded",
                    "Entries in the sets of the bundle the kernel holds.",
                    self.set_entries,
                ),
                *_gauge(
                    "rampart_agent_start_time_seconds",
                    "Unix time the agent process started.",
                    self.started,
                ),
            ]
        return "\n".join(out) + "\n"


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _gauge(name: str, help_text: str, value: float) -> list[str]:
    return [*_family(name, "gauge", help_text), f"{name} {_number(value)}"]


class _Clock(Protocol):
    def time(self) -> float: ...


class Measured(Protocol):
    """What `measured_apply` needs of the object whose method it wraps (the engine)."""

    metrics: AgentMetrics

    @property
    def clock(self) -> _Clock: ...


P = ParamSpec("P")
R = TypeVar("R", bound=dict[str, Any])
M = TypeVar("M", bound=Measured)


def measured_apply(
    func: Callable[Concatenate[M, P], R],
) -> Callable[Concatenate[M, P], R]:
    """Count an apply method's answer and time it, whatever it answers or raises."""

    @functools.wraps(func)
    def wrapper(self: M, /, *args: P.args, **kwargs: P.kwargs) -> R:
        started = time.monotonic()
        try:
            answer = func(self, *args, **kwargs)
        except AgentError as exc:
            result = str(exc.body.get("result") or f"refused_{exc.status}")
            self.metrics.apply_finished(result, time.monotonic() - started, self.clock.time())
            raise
        except Exception:
            self.metrics.apply_finished("error", time.monotonic() - started, self.clock.time())
            raise
        result = str(answer.get("result") or "applied")
        self.metrics.apply_finished(result, time.monotonic() - started, self.clock.time())
        return answer

    return wrapper


class Source(Measured, Protocol):
    """The engine as the metrics listener reads it."""

    @property
    def state(self) -> StateDir: ...


def exposition(engine: Source) -> str:
    """The engine's metrics with its live record read now (no engine lock taken)."""
    live = engine.state.read_json(LIVE_FILE) or {}
    return engine.metrics.render(live if isinstance(live, dict) else {}, engine.clock.time())


class MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsServer
    server_version = "rampart-agent-metrics"
    sys_version = ""
    timeout = 10  # a silent connection is closed: it holds one of MAX_CONNECTIONS

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics here")
            return
        try:
            body = self.server.render().encode()
        except Exception:  # a scrape must never take the agent down; say it failed
            log.exception("metrics rendering failed")
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)


class MetricsServer(ThreadingHTTPServer):
    """Unauthenticated, so bounded: at most MAX_CONNECTIONS threads, more are closed at
    accept (else any peer that reaches it could make the agent start a thread each)."""

    daemon_threads = True
    allow_reuse_address = True
    MAX_CONNECTIONS = 16

    def __init__(self, address: tuple[str, int], render: Callable[[], str]) -> None:
        self.render = render
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._slots = threading.BoundedSemaphore(self.MAX_CONNECTIONS)
        super().__init__(address, MetricsHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
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

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (10 s where no resolver answers)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port); ValueError when it is neither."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdecimal() or not host:
        raise ValueError(f"{listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def serve_metrics(listen: str, engine: Source, *, api_listen: str) -> MetricsServer:
    """Start the metrics listener on its own thread. ValueError for a bad address or one
    on the agent API's port: that port serves the signed API only."""
    host, port = parse_listen(listen)
    if port == parse_listen(api_listen)[1]:
        raise ValueError(
            f"port {port} is the agent API's ({api_listen}); the API serves signed requests only"
        )
    server = MetricsServer((host, port), lambda: exposition(engine))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
