"""`rampart-agent`: serve, enroll, status, apply, rollback, restore, confirm, fleet.

User errors end with one readable line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rampart_agent import protocol
from rampart_agent.dataplane import DataplaneError, RecordingDataplane, open_dataplane
from rampart_agent.engine import AgentError, Engine, gather_facts
from rampart_agent.ruleset import BundleError
from rampart_agent.runner import CommandError
from rampart_agent.state import DEFAULT_STATE_DIR, ENROLLMENT_FILE, StateDir

log = logging.getLogger("rampart.agent")


class UserError(Exception):
    pass


def _dataplane(args: argparse.Namespace, state: StateDir):  # noqa: ANN202
    kind = args.dataplane or os.environ.get("RAMPART_AGENT_DATAPLANE") or "iptables"
    if kind == "recording":
        return RecordingDataplane(path=state.path / "recording.json")
    if kind not in ("iptables", "auto", "legacy", "nft"):
        raise UserError(f"unknown dataplane {kind!r} (iptables, legacy, nft, recording)")
    return open_dataplane(kind)


def _engine(args: argparse.Namespace) -> Engine:
    state = StateDir(args.state_dir, args.run_dir)
    state.ensure_identity()
    return Engine(
        state, _dataplane(args, state), default_confirm_timeout=getattr(args, "confirm_timeout", 30)
    )


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def cmd_serve(args: argparse.Namespace) -> int:
    from rampart_agent.server import make_server

    engine = _engine(args)
    if engine.dp.backend == "legacy":
        try:
            import iptc  # noqa: F401 - ~0.8 s once here rather than in the first apply
        except Exception as exc:  # noqa: BLE001 - it fails in several ways without libxtables
            log.warning("python-iptables unavailable (%s): reads use iptables-legacy", exc)
    result = engine.start()  # the confirmed policy is in place before the API serves
    log.info("restored version %s (%s)", result["version"], "full" if result["full"] else "kept")
    server = make_server(engine, engine.state, args.listen)
    log.info("listening on https://%s (backend %s)", args.listen, engine.dp.name)
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
    print(f"ready {args.listen}", flush=True)
    server.serve_forever()
    engine.shutdown()
    return 0


def _resync_loop(engine: Engine, interval: float, stop: threading.Event) -> None:
    """Felix-style periodic read-back: drift found here makes the next apply a full one."""
    while not stop.wait(interval):
        try:
            if engine.status()["drift"]["drifted"]:
                log.warning("drift detected: the next apply rewrites every RPT- chain")
        except Exception:  # keep the loop alive; the next round retries
            log.exception("resync read failed")


def cmd_enroll(args: argparse.Namespace) -> int:
    import requests

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
    try:
        resp = requests.post(url, json=payload, timeout=30, verify=not args.insecure)
    except requests.RequestException as exc:
        raise UserError(f"cannot reach the console at {url}: {exc}") from exc
    if resp.status_code >= 300:
        try:
            detail = resp.json()
        except ValueError:
            detail = resp.text[:200]
        raise UserError(f"enrollment refused ({resp.status_code}): {detail}")
    answer = resp.json()
    state.set_console_key(answer["console_public_key"])
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
    _print(_engine(args).status())
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    try:
        data = json.loads(Path(args.file).read_text() if args.file != "-" else sys.stdin.read())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {args.file}: {exc}") from exc
    if args.confirm_timeout_set is not None and isinstance(data, dict) and "bundle" in data:
        data["confirm_timeout"] = args.confirm_timeout_set
    _print(_engine(args).apply(data, local=True))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    _print(_engine(args).rollback("local rollback"))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    _print(_engine(args).start(serving=False))
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    _print(_engine(args).confirm(args.version))
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    """Many agents (recording dataplane) in one process, for the console's fleet benchmark."""
    from rampart_agent.server import serve_fleet

    console_key = args.console_key
    if args.console_key_file:
        console_key = Path(args.console_key_file).read_text().strip()
    root = Path(args.state_root)
    engines = []
    manifest = []
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
                "address": args.host,
                "public_key": protocol.public_key_b64(key),
                "cert_fingerprint": state.cert_fingerprint(),
                "state_dir": str(state.path),
            }
        )
    servers = serve_fleet(engines, args.host, args.base_port)
    for entry, server in zip(manifest, servers, strict=True):
        entry["port"] = server.server_address[1]
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(
        f"ready {args.count} agents on {args.host} ports {manifest[0]['port']}.."
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
            choices=["iptables", "legacy", "nft", "recording"],
            help="default: iptables, backend detected (or RAMPART_AGENT_DATAPLANE)",
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
