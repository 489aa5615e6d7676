"""The real dataplane: iptables (legacy or nft) and ipset, through their restore tools.

It writes with `iptables-restore --noflush --wait` and `ipset restore` (one process per
family and change, never one call per rule) and reads back with `iptables-save -c` (nft,
full reads) or python-iptables (legacy, the built-in chains in the apply path).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Collection, Iterable, Mapping

from rampart_agent.dataplane import ipset_netlink
from rampart_agent.dataplane.base import (
    Dataplane,
    DataplaneError,
    LiveFamily,
    LiveRule,
    LiveSet,
    PendingRestore,
)
from rampart_agent.dataplane.iptc_reader import iptc_read_builtins, preload_iptc
from rampart_agent.dataplane.save import parse_ipset_save, parse_listed, parse_save
from rampart_agent.dataplane.xtables_lock import WAITING, await_free
from rampart_agent.ipset_types import ipset_types
from rampart_agent.ruleset import CHAIN_PREFIX, SET_PREFIX, LiveJump, Table, _target, plan_table
from rampart_agent.runner import CommandError, Pending, Runner
from rampart_contract.naming import NFT_TABLE

log = logging.getLogger("rampart.agent")

IPSET_RESTORE = ["ipset", "-exist", "restore"]
NATIVE_KEY = "nft-native:inet"  # where other_backend_leftovers names our nft table
CHAIN_READS = 8  # more chains than this to read: one `-save` of the table instead


def foreign_rules(runner: Runner, backend: str) -> int | None:
    """Rules not ours in `backend`'s IPv4 tables (None: no such iptables tool)."""
    try:
        out = runner.run([f"iptables-{backend}-save"], check=False).stdout
    except OSError:
        return None
    return sum(
        1 for ln in out.splitlines() if ln.split("] ", 1)[-1].startswith("-A ") and "RPT-" not in ln
    )


def detect_backend(runner: Runner | None = None) -> str:
    """'nft' or 'legacy': the backend the host's other firewall users (Docker, kube-proxy,
    the admin) actually use — the one holding more rules that are not ours, as
    kube's iptables-wrapper decides — and, on a tie, what `iptables` is (alternatives)."""
    runner = runner or Runner()
    counts = {}
    for backend in ("legacy", "nft"):
        found = foreign_rules(runner, backend)
        if found is not None:
            counts[backend] = found
    if counts.get("legacy", 0) != counts.get("nft", 0):
        return max(counts, key=lambda b: counts[b])
    try:
        out = runner.run(["iptables", "-V"]).stdout
    except (CommandError, FileNotFoundError):
        return "nft" if shutil.which("iptables-nft") else "legacy"
    return "nft" if "nf_tables" in out else "legacy"


class IptablesDataplane(Dataplane):
    """iptables (legacy or nft) + ipset, through their restore tools."""

    def __init__(
        self,
        backend: str,
        runner: Runner | None = None,
        reader: str = "auto",
        native_cleanup: bool = True,
    ) -> None:
        if backend not in ("legacy", "nft"):
            raise ValueError("backend must be 'legacy' or 'nft'")
        self.backend = backend
        self.name = f"iptables-{backend}"
        if backend == "nft":
            # measured here, 50k-rule chain: delete+insert in place ~23 s, rewrite ~5 s;
            # 1k-rule chain: in place ~50 ms, rewrite ~220 ms
            self.inplace_limit = 5000
        self.runner = runner or Runner()
        self._netlink_off = False  # set when the kernel refuses our netlink reads (not root)
        # iptc reads the tables of the process's own namespace: only usable in-process.
        # It reads the built-in chains in the apply path; full reads use `-save -c`.
        if reader == "auto":
            reader = "iptc" if backend == "legacy" and not self.runner.prefix else "save"
        self.reader = reader
        # our `table inet rampart` (the nft-native dataplane's) is a backend of ours too
        self.native_cleanup = native_cleanup

    @property
    def reads_jumps_in_process(self) -> bool:
        return self.reader == "iptc"

    def _tool(self, family: str, tool: str, backend: str | None = None) -> str:
        return f"{'ip6' if family == 'v6' else 'ip'}tables-{backend or self.backend}{tool}"

    def await_kernel_lock(self, timeout: float) -> float:
        if self.backend != "legacy":
            return 0.0  # iptables-nft takes no xtables lock

        def say(waiting: bool) -> None:
            self.activity = WAITING if waiting else ""

        return await_free(timeout, say)

    def _restore_argv(self, family: str) -> list[str]:
        return [self._tool(family, "-restore"), "--noflush", "--wait=60"]

    def busy(self) -> contextlib.AbstractContextManager[None]:
        return self.runner.busy()

    def keep_tools_ready(self, ready: bool = True) -> None:
        if ready:
            self.runner.keep_warm(
                [self._restore_argv("v4"), self._restore_argv("v6"), IPSET_RESTORE]
            )
            if self.reader == "iptc":  # the first apply reads through it (read_jumps)
                preload_iptc()
        else:
            self.runner.stop_warm()

    def restore(self, family: str, payload: str) -> None:
        self.begin_restore(family, "").commit(payload)

    def begin_restore(self, family: str, head: str) -> PendingRestore:
        pending = self.runner.start(self._restore_argv(family))
        pending.feed(head)
        return PendingRestore(self._finisher(pending), pending.abort)

    def read(self, family: str, tables: Iterable[str] | None = None) -> LiveFamily:
        return self._save_read(family, tables, self.backend)

    def _save_read(self, family: str, tables: Iterable[str] | None, backend: str) -> LiveFamily:
        argv = [self._tool(family, "-save", backend), "-c"]
        wanted = list(tables) if tables is not None else None
        if wanted is not None and len(wanted) == 1:
            argv += ["-t", wanted[0]]
        live = parse_save(self.runner.run(argv).stdout)
        if wanted is not None:
            live = {t: v for t, v in live.items() if t in wanted}
        return live

    def read_chains(
        self, family: str, table: str, chains: Iterable[str]
    ) -> dict[str, list[LiveRule]]:
        """nft: `-S CHAIN -v` per chain, which fetches that chain only (~2-11 ms whatever the
        table's size; a `-save` of a 10k-rule table: ~1.8 s), for up to CHAIN_READS chains.
        Legacy fetches the whole table for either, so it reads the table once."""
        names = list(chains)
        if self.backend != "nft" or len(names) > CHAIN_READS:
            return super().read_chains(family, table, names)
        out: dict[str, list[LiveRule]] = {}
        for name in names:
            res = self.runner.run(
                [self._tool(family, ""), "-w", "60", "-t", table, "-S", name, "-v"], check=False
            )
            if res.returncode == 0:
                out[name] = parse_listed(res.stdout)
        return out

    def read_jumps(
        self, family: str, table: str, builtins: Iterable[str]
    ) -> dict[str, list[LiveJump]]:
        wanted = set(builtins)
        if self.reader == "iptc":
            try:
                live = iptc_read_builtins(family, table)
                return {b: j for b, j in (live.jumps() if live else {}).items() if b in wanted}
            except Exception as exc:  # noqa: BLE001 - iptc raises its own and ctypes errors
                # e.g. "set XTABLES_LIBDIR": keep working through the tools instead
                log.warning("python-iptables unusable (%s); reading with iptables-legacy", exc)
                self.reader = "save"
        # `-S CHAIN` fetches one built-in chain, not a 50k-rule table dump (nft: ~11 ms).
        out: dict[str, list[LiveJump]] = {}
        for builtin in sorted(wanted):
            res = self.runner.run(
                [self._tool(family, ""), "-w", "60", "-t", table, "-S", builtin], check=False
            )
            if res.returncode != 0:
                continue
            rules = [ln.split(None, 2) for ln in res.stdout.splitlines() if ln.startswith("-A ")]
            found = [
                LiveJump(i, t)
                for i, parts in enumerate(rules, 1)
                if (t := _target(parts[2] if len(parts) > 2 else "")) and t.startswith(CHAIN_PREFIX)
            ]
            if found:
                out[builtin] = found
        return out

    def ipset_list(self) -> dict[str, int]:
        out = self.runner.run(["ipset", "list", "-t"]).stdout
        sets: dict[str, int] = {}
        name = None
        for line in out.splitlines():
            if line.startswith("Name: "):
                name = line[6:].strip()
            elif line.startswith("Number of entries: ") and name and name.startswith(SET_PREFIX):
                sets[name] = int(line.split(":", 1)[1])
        return sets

    def read_sets(
        self, names: Iterable[str] | None = None, keys: Mapping[str, Collection[str]] | None = None
    ) -> dict[str, LiveSet]:
        """Each named set from the kernel's own dump (netlink, `ipset_netlink`; at 50k
        rules ~0.8 s for 45 sets and 123k elements against ~1.5 s for `ipset save` and its
        parse); what netlink cannot read, by `ipset save NAME` per set for a few sets (a
        one-rule change reads one or two, not the 100k-entry groups beside them), one
        `ipset save` for more. No names: every set of ours, one `ipset save`."""
        if names is None:
            return parse_ipset_save(self.runner.run(["ipset", "save"]).stdout, None, keys)
        out: dict[str, LiveSet] = {}
        rest: list[str] = []
        for name in names:
            # keys a one-rule change gives: element -> the rule uuid its comment carries
            want = keys.get(name) if keys else None
            tags = set(want.values()) if isinstance(want, Mapping) else None
            read, live = self._read_set_netlink(name, tags)
            if not read:
                rest.append(name)
            elif live is not None:
                out[name] = live
        if len(rest) > CHAIN_READS:
            out.update(parse_ipset_save(self.runner.run(["ipset", "save"]).stdout, rest, keys))
            return out
        for name in rest:
            res = self.runner.run(["ipset", "save", name], check=False)
            if res.returncode == 0:
                out.update(parse_ipset_save(res.stdout, [name], keys))
        return out

    def _read_set_netlink(
        self, name: str, tags: Collection[str] | None
    ) -> tuple[bool, LiveSet | None]:
        """(True, the set from the kernel's own dump, None if there is no such set), or
        (False, None) when netlink cannot read it here (a runner prefix it cannot follow, a
        fake runner, no permission, something it cannot spell as `ipset save`): the caller
        asks `ipset save` then."""
        followable, netns = self.runner.netns()
        if not followable or self._netlink_off:
            return False, None
        try:
            return True, ipset_netlink.read_set(name, netns, tags)
        except (OSError, ipset_netlink.Unreadable) as exc:
            if isinstance(exc, PermissionError):
                self._netlink_off = True  # not root: no use asking again
            log.debug("reading %s over netlink: %s; asking ipset save", name, exc)
            return False, None

    def ipset_restore(self, payload: str) -> None:
        try:
            self.runner.run(IPSET_RESTORE, input=payload)
        except CommandError as exc:
            raise DataplaneError(str(exc)) from exc

    def begin_ipset_restore(self, payload: str) -> PendingRestore:
        pending = self.runner.start(IPSET_RESTORE)
        pending.feed_all_in_background(payload)
        return PendingRestore(self._finisher(pending), pending.abort)

    @staticmethod
    def _finisher(pending: Pending) -> Callable[[str], None]:
        def commit(rest: str) -> None:
            try:
                pending.finish(rest)
            except CommandError as exc:
                raise DataplaneError(str(exc)) from exc

        return commit

    def ipset_destroy(self, names: Iterable[str]) -> list[str]:
        names = [n for n in names if n.startswith(SET_PREFIX)]
        if not names:
            return []
        payload = "".join(f"destroy {n}\n" for n in names)
        if self.runner.run(["ipset", "restore"], input=payload, check=False).returncode == 0:
            return []
        failed = []
        for n in names:  # one is still referenced: destroy the others one by one
            if self.runner.run(["ipset", "destroy", n], check=False).returncode != 0:
                failed.append(n)
        return [n for n in failed if n in self.ipset_list()]

    def _other(self) -> str:
        return "nft" if self.backend == "legacy" else "legacy"

    def _native_table(self) -> bool:
        """Does the nft-native dataplane's table exist (left by it before a switch)?"""
        if not self.native_cleanup:
            return False
        try:
            res = self.runner.run(["nft", "list", "table", "inet", NFT_TABLE], check=False)
        except OSError:
            return False  # no nft tool: no table either
        return res.stdout.startswith(f"table inet {NFT_TABLE}")

    def other_backend_leftovers(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        if self._native_table():
            found[NATIVE_KEY] = [f"table inet {NFT_TABLE}"]
        for family in ("v4", "v6"):
            try:
                live = self._save_read(family, None, self._other())
            except (CommandError, FileNotFoundError):
                continue
            for table, lt in live.items():
                names = sorted(lt.chains) + [
                    f"{b}->{j.target}" for b, js in lt.jumps().items() for j in js
                ]
                if names:
                    found[f"{family}:{table}"] = names
        return found

    def cleanup_other_backend(self) -> dict[str, list[str]]:
        """Remove our chains and jumps from the other backend (they would shadow or hide)."""
        found = self.other_backend_leftovers()
        for key in found:
            if key == NATIVE_KEY:  # one transaction, our table only
                self.runner.run(["nft", "delete", "table", "inet", NFT_TABLE])
                continue
            family, table = key.split(":")
            lt = self._save_read(family, [table], self._other())[table]
            lines = plan_table(
                table, None, Table(table), lt.jumps(), full=True, live_chains=set(lt.chains)
            )
            if lines:
                argv = [self._tool(family, "-restore", self._other()), "--noflush", "--wait=60"]
                self.runner.run(argv, input="\n".join(lines) + "\n")
        return found

    def facts(self) -> dict[str, str]:
        res = self.runner.run([self._tool("v4", ""), "-V"], check=False)
        return {
            "iptables_version": res.stdout.strip(),
            "backend": self.backend,
            "ipset_types": ipset_types(self.runner),
        }
