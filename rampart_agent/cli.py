"""`rampart-agent`: serve, enroll, status, apply, rollback, restore, confirm, fleet.

User errors end with one readable line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import ssl
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rampart_agent import __version__, control, protocol
from rampart_agent.dataplane import (
    Dataplane,
    DataplaneError,
    RecordingDataplane,
    open_dataplane,
)
from rampart_agent.dataplane.select import HELD_IPTABLES, HELD_NATIVE
from rampart_agent.engine import Engine
from rampart_agent.errors import AgentError
from rampart_agent.generation import RECHECK_SECONDS
from rampart_agent.host import gather_facts
from rampart_agent.intake import MIB, Limits
from rampart_agent.metrics import serve_metrics
from rampart_agent.owner import SERVE, Owner
from rampart_agent.ruleset import BundleError
from rampart_agent.runner import CommandError
from rampart_agent.server import make_server, serve_fleet
from rampart_agent.state import CONFIRMED_FILE, DEFAULT_STATE_DIR, ENROLLMENT_FILE, StateDir

log = logging.getLogger("rampart.agent")


ENROLL_TIMEOUT = 30  # seconds for the console to answer an enrollment
OWNER_WAIT = 120  # seconds to wait for a one-shot command that owns the state directory


class UserError(Exception):
    """A mistake on the command line or a refusal to report in one line, without traceback."""


def _held(state: StateDir) -> str | None:
    """What the confirmed bundle can be restored with: HELD_NATIVE (it carries the `nft`
    script), HELD_IPTABLES (it does not: iptables only) or None (none confirmed, or its
    file is lost)."""
    digest = str((state.read_json(CONFIRMED_FILE) or {}).get("hash") or "")
    for pending in (False, True) if digest else ():
        try:
            raw = json.loads(state.bundle_file(digest, pending).read_bytes())
        except (OSError, ValueError):
            continue
        return HELD_NATIVE if isinstance(raw, dict) and raw.get("nft") else HELD_IPTABLES
    return None


def _dataplane(args: argparse.Namespace, state: StateDir) -> Dataplane:
    kind = args.dataplane or os.environ.get("RAMPART_AGENT_DATAPLANE") or "auto"
    if kind == "recording":
        return RecordingDataplane(path=state.path / "recording.json")
    if kind not in ("auto", "iptables", "legacy", "nft", "nft-native"):
        raise UserError(
            f"unknown dataplane {kind!r} (auto, iptables, legacy, nft, nft-native, recording)"
        )
    held = _held(state)
    try:
        dp = open_dataplane(kind, held=held)
    except ValueError as exc:  # a bad RAMPART_AGENT_BACKEND
        raise UserError(str(exc)) from exc
    if dp.loads_script and held == HELD_IPTABLES:
        # it would fail at every start, and the iptables rules would stay beside its table
        raise UserError(
            "the confirmed bundle was compiled for iptables (no nft script): the nft-native "
            "dataplane cannot restore it; run with --dataplane auto or iptables "
            "(docs/agent.md, Choosing the dataplane)"
        )
    return dp


def _engine(args: argparse.Namespace) -> Engine:
    state = StateDir(args.state_dir, args.run_dir)
    state.ensure_identity()
    return Engine(
        state, _dataplane(args, state), default_confirm_timeout=getattr(args, "confirm_timeout", 30)
    )


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def _take_ownership(state: StateDir, role: str) -> tuple[Owner, tuple[int, str] | None]:
    """The owner lock (owner.py), waiting for a one-shot command; the holder if it is
    `serve` (or the wait ran out)."""
    state.ensure()
    owner = Owner(state.path)
    return owner, owner.wait(role, OWNER_WAIT)


def _busy(state: StateDir, pid: int, role: str) -> UserError:
    if role == SERVE:
        return UserError(
            f"rampart-agent serve (pid {pid}) owns {state.path}; its control socket "
            f"{control.socket_path(state)} does not answer: stop it first"
        )
    return UserError(
        f"rampart-agent {role or 'command'} (pid {pid or '?'}) owns {state.path} "
        f"for more than {OWNER_WAIT} s; try again when it ends"
    )


def _one_shot(args: argparse.Namespace, command: str, control_args: dict[str, Any]) -> Any:
    """Run a local command: in this process when the state directory is free, else by the
    `serve` that owns it, over its control socket (never a second engine beside it)."""
    state = StateDir(args.state_dir, args.run_dir)
    owner, holder = _take_ownership(state, command)
    if holder is None:
        try:
            return control.run_command(_engine(args), command, control_args)
        finally:
            owner.release()
    pid, role = holder
    if role != SERVE:
        raise _busy(state, pid, role)
    try:
        return control.call(control.socket_path(state), command, control_args)
    except OSError as exc:
        raise _busy(state, pid, role) from exc


def cmd_serve(args: argparse.Namespace) -> int:
    owner, holder = _take_ownership(StateDir(args.state_dir, args.run_dir), SERVE)
    if holder is not None:
        pid, role = holder
        raise UserError(
            f"rampart-agent {role or 'command'} (pid {pid or '?'}) owns {args.state_dir}; "
            "stop it first"
        )
    try:
        return _serve(args)
    finally:
        owner.release()


def _serve(args: argparse.Namespace) -> int:
    engine = _engine(args)
    if engine.dp.backend == "legacy":
        try:
            # optional (needs libxtables): imported here, ~0.8 s, rather than in the first apply
            import iptc  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - it fails in several ways without libxtables
            log.warning("python-iptables unavailable (%s): reads use iptables-legacy", exc)
    result = engine.start()  # the confirmed policy is in place before the API serves
    log.info("restored version %s (%s)", result["version"], "full" if result["full"] else "kept")
    limits = Limits(
        max_connections=args.max_connections,
        max_bundle_bytes=args.max_bundle_bytes,
        max_read_bytes=args.max_read_bytes,
    )
    server = make_server(engine, engine.state, args.listen, limits, args.status_recheck)
    local = control.start_control(engine.state, engine, limits.max_bundle_bytes + MIB)
    host, port = str(server.server_name), server.server_port
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    log.info("listening on https://%s (backend %s)", address, engine.dp.name)
    if args.metrics_listen:
        _start_metrics(args.metrics_listen, engine, address)
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.resync_interval > 0:
        threading.Thread(
            target=_resync_loop, args=(engine, args.resync_interval, stop), daemon=True
        ).start()
    print(f"ready {address}", flush=True)
    server.serve_forever()
    if local is not None:
        local.stop()
    engine.shutdown()
    return 0


def _start_metrics(listen: str, engine: Engine, api_address: str) -> None:
    """The Prometheus listener (metrics.py): plain HTTP, never on the API's port."""
    try:
        serve_metrics(listen, engine, api_listen=api_address)
    except (ValueError, OSError) as exc:
        raise UserError(f"--metrics-listen {listen}: {exc}") from exc
    log.info("metrics on http://%s/metrics", listen)


def _resync_loop(engine: Engine, interval: float, stop: threading.Event) -> None:
    """Felix-style periodic read-back: drift found here makes the next apply a full one."""
    while not stop.wait(interval):
        try:
            if (engine.status()["drift"] or {}).get("drifted"):  # null: an apply waits
                log.warning("drift detected: the next apply rewrites every RPT- chain")
        except Exception:  # keep the loop alive; the next round retries
            log.exception("resync read failed")


def _post_json(url: str, payload: dict[str, Any], *, insecure: bool) -> tuple[int, bytes]:
    """POST `payload` as JSON: (status, body) of any HTTP answer; UserError when the console
    cannot be reached. `insecure`: the console's TLS certificate is not verified."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, allow_nan=False).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=ENROLL_TIMEOUT, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
    except (OSError, ValueError) as exc:  # URLError, TLS, timeout; ValueError: a bad URL
        raise UserError(f"cannot reach the console at {url}: {exc}") from exc


def cmd_enroll(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir, args.run_dir)
    key = state.ensure_identity()
    if args.facts_file:
        try:
            facts = json.loads(Path(args.facts_file).read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read facts from {args.facts_file}: {exc}") from exc
    else:
        facts = gather_facts(_dataplane(args, state))
    payload = {
        "token": args.token,
        "public_key": protocol.public_key_b64(key),
        "cert_fingerprint": state.cert_fingerprint(),
        "listen_port": args.listen_port,
        "facts": facts,
    }
    url = args.console.rstrip("/") + protocol.ENROLL_PATH
    status, body = _post_json(url, payload, insecure=args.insecure)
    if status >= 300:
        try:
            detail = json.loads(body)
        except ValueError:
            detail = body.decode(errors="replace")[:200]
        raise UserError(f"enrollment refused ({status}): {detail}")
    try:
        answer = json.loads(body)
        console_key = answer["console_public_key"]
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"the console's answer is not an enrollment: {body[:200]!r}") from exc
    state.set_console_key(console_key)
    state.write_json(
        ENROLLMENT_FILE,
        {
            "console": args.console,
            "device": answer.get("device"),
            "device_id": answer.get("device_id"),
        },
    )
    print(f"enrolled as {answer.get('device')} (fingerprint {payload['cert_fingerprint']})")
    return 0


def cmd_facts(args: argparse.Namespace) -> int:
    """Print the facts sent at enrollment (run inside a namespace, enroll from outside)."""
    state = StateDir(args.state_dir, args.run_dir)
    state.ensure_identity()
    _print(gather_facts(_dataplane(args, state)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    _print(_one_shot(args, "status", {}))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    try:
        data = json.loads(Path(args.file).read_text() if args.file != "-" else sys.stdin.read())
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"cannot read {args.file}: {exc}") from exc
    if args.confirm_timeout_set is not None and isinstance(data, dict):
        if "bundle" not in data and "format" in data:  # a bare bundle
            data = {"bundle": data}
        data["confirm_timeout"] = args.confirm_timeout_set
    _print(_one_shot(args, "apply", {"request": data}))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    _print(_one_shot(args, "rollback", {}))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    _print(_one_shot(args, "restore", {}))
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    _print(_one_shot(args, "confirm", {"version": args.version}))
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    """Many agents (recording dataplane) in one process, for the console's fleet benchmark."""
    console_key = args.console_key
    if args.console_key_file:
        console_key = Path(args.console_key_file).read_text().strip()
    root = Path(args.state_root)
    engines = []
    manifest = []
    hosts = [
        str(ipaddress.IPv4Address(args.host) + i) if args.spread_hosts else args.host
        for i in range(args.count)
    ]
    for i in range(args.count):
        state = StateDir(root / f"agent-{i:05d}")
        key = state.ensure_identity(f"fleet-{i}")
        if console_key:
            state.set_console_key(console_key)
        dp = RecordingDataplane() if args.dataplane in (None, "recording") else None
        if dp is None:
            raise UserError("fleet mode runs the recording dataplane only")
        engine = Engine(state, dp, default_confirm_timeout=args.confirm_timeout)
        engine.start()
        engines.append((engine, state))
        manifest.append(
            {
                "name": f"fleet-{i}",
                "address": hosts[i],
                "public_key": protocol.public_key_b64(key),
                "cert_fingerprint": state.cert_fingerprint(),
                "state_dir": str(state.path),
            }
        )
    servers = serve_fleet(engines, args.host, args.base_port, spread_hosts=args.spread_hosts)
    for entry, server in zip(manifest, servers, strict=True):
        entry["port"] = server.server_address[1]
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(
        f"ready {args.count} agents on {hosts[0]}..{hosts[-1]} ports {manifest[0]['port']}.."
        f"{manifest[-1]['port']} (manifest {root / 'manifest.json'})",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1):
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rampart-agent", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        p.add_argument(
            "--state-dir", default=os.environ.get("RAMPART_AGENT_STATE_DIR", DEFAULT_STATE_DIR)
        )
        p.add_argument(
            "--run-dir",
            default=os.environ.get("RAMPART_AGENT_RUN_DIR"),
            help="records of what the kernel holds now (default: "
            "/run/rampart-agent with the default state dir, else STATE_DIR/run)",
        )
        p.add_argument(
            "--dataplane",
            choices=["auto", "iptables", "legacy", "nft", "nft-native", "recording"],
            help="default: auto (or RAMPART_AGENT_DATAPLANE): nft-native where the host runs "
            "nftables, else the iptables backend detected (docs/agent.md); iptables: an "
            "iptables backend, detected; nft-native: Rampart's own nftables table",
        )
        return p

    p = add("serve", cmd_serve, "restore the confirmed policy, then serve the HTTPS API")
    p.add_argument("--listen", default="0.0.0.0:8745")
    p.add_argument(
        "--confirm-timeout",
        type=float,
        default=30,
        help="default seconds to wait for the console's confirm",
    )
    p.add_argument(
        "--resync-interval",
        type=float,
        default=300,
        help="seconds between drift read-backs (0: never)",
    )
    p.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics over plain HTTP at http://HOST:PORT/metrics "
        "(default: off; never the API's port; see docs/metrics.md)",
    )
    p.add_argument(
        "--status-recheck",
        type=float,
        default=RECHECK_SECONDS,
        help="seconds a conditional status poll (`?since=G`) may answer from the last kernel "
        "read; drift made by hand shows within this plus one poll interval (default 30)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=Limits.max_connections,
        help="connections served at once; more are closed at once",
    )
    p.add_argument(
        "--max-bundle-bytes",
        type=int,
        default=Limits.max_bundle_bytes,
        help="largest POST /v1/apply body (other routes: 64 KiB)",
    )
    p.add_argument(
        "--max-read-bytes",
        type=int,
        default=Limits.max_read_bytes,
        help="request bodies read at once over all connections; more answer 503",
    )
    p = add("enroll", cmd_enroll, "enroll with the console using a one-time token")
    p.add_argument("--console", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--listen-port", type=int, default=protocol.DEFAULT_PORT)
    p.add_argument("--insecure", action="store_true", help="do not verify the console's TLS")
    p.add_argument("--facts-file", help="facts JSON (from `facts`) instead of this host's")
    add("facts", cmd_facts, "print this host's facts (hostname, interfaces, kernel, iptables)")
    add("status", cmd_status, "print the applied bundle, drift and counters")
    p = add("apply", cmd_apply, "break-glass: apply a bundle or apply-request JSON file")
    p.add_argument("file")
    p.add_argument("--confirm-timeout", dest="confirm_timeout_set", type=float, default=None)
    add("rollback", cmd_rollback, "re-apply the last confirmed bundle")
    add("restore", cmd_restore, "at boot: re-apply the last confirmed bundle")
    p = add("confirm", cmd_confirm, "confirm a pending version locally")
    p.add_argument("version", type=int)
    p = add("fleet", cmd_fleet, "many recording agents in one process (fleet benchmark)")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--base-port", type=int, default=20000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--spread-hosts",
        action="store_true",
        help="agent i listens on HOST + i, every agent on --base-port (a fleet whose agents "
        "share one port, as real hosts do: one compiled policy for all)",
    )
    p.add_argument("--state-root", required=True)
    p.add_argument("--console-key", help="console public key (base64) written to every agent")
    p.add_argument("--console-key-file")
    p.add_argument("--confirm-timeout", type=float, default=30)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except (UserError, AgentError, BundleError, DataplaneError, CommandError) as exc:
        print(f"rampart-agent: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, AgentError) and exc.status == 409 else 1
    except PermissionError as exc:
        print(
            f"rampart-agent: error: permission denied: {exc.filename or exc} "
            "(run as root or choose --state-dir)",
            file=sys.stderr,
        )
        return 1
    except FileNotFoundError as exc:
        print(f"rampart-agent: error: not found: {exc.filename or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
