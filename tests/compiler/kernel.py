"""Load bundles into a real kernel inside an `rpt_` namespace (never the root one)."""

from __future__ import annotations

from compiler import Bundle, with_nft
from tests.support.netns import Netns

TOOLS = {
    "nft": ("iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save"),
    "legacy": (
        "iptables-legacy-restore",
        "ip6tables-legacy-restore",
        "iptables-legacy-save",
        "ip6tables-legacy-save",
    ),
}
EMPTY = "*filter\nCOMMIT\n*nat\nCOMMIT\n"
NATIVE = "nft-native"  # the agent's native nftables dataplane (compiler/render_nft.py)
DATAPLANES = ["nft", NATIVE]  # iptables-nft and native nftables (legacy: test_kernel.py)


def load(ns: Netns, bundle: Bundle, backend: str = "nft") -> None:
    """ipset restore, then iptables-restore for v4 and v6; raise with the tool's stderr.
    Backend `nft-native`: the bundle's `nft` script (rendered here) in one `nft -f`."""
    if backend == NATIVE:
        result = ns.run("nft", "-f", "-", input=with_nft(bundle).nft, check=False)
        if result.returncode != 0:
            raise AssertionError(f"nft -f failed: {result.stderr.strip()}")
        return
    restore4, restore6, _, _ = TOOLS[backend]
    for cmd, text in (
        (("ipset", "restore"), bundle.ipsets),
        ((restore4,), bundle.iptables_v4),
        ((restore6,), bundle.iptables_v6),
    ):
        result = ns.run(*cmd, input=text, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")


def reset(ns: Netns, backend: str = "nft") -> None:
    """Empty every table and destroy every set (between two policies in one namespace);
    Rampart's nft table goes whatever the backend."""
    ns.run("nft", "delete", "table", "inet", "rampart", check=False)
    if backend == NATIVE:
        backend = "nft"
    restore4, restore6, _, _ = TOOLS[backend]
    ns.run(restore4, input=EMPTY)
    ns.run(restore6, input=EMPTY)
    ns.run("ipset", "destroy")


def saved_rules(ns: Netns, family: int, backend: str = "nft") -> dict[tuple[str, str], list[str]]:
    """`-A` lines per (table, chain) as iptables-save prints them."""
    tool = TOOLS[backend][2 if family == 4 else 3]
    return rules_by_chain(ns.run(tool).stdout)


def rules_by_chain(text: str) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A "):
            out.setdefault((table, line.split()[1]), []).append(line)
    return out
