"""Names in the kernel that Rampart owns: the contract between the compiler, which makes
them, and the agent, which recognises its own chains and sets by them and leaves every
other chain and set (Docker's, kube-proxy's, the admin's) alone.
"""

from __future__ import annotations

CHAIN_PREFIX = "RPT-"  # every chain Rampart creates
SET_PREFIX = "rpt-"  # every ipset Rampart creates
NFT_TABLE = "rampart"  # the native nftables dataplane's one table: `table inet rampart`
CHAIN_MAX = 28  # iptables' limit on a chain name (XT_EXTENSION_MAXNAMELEN - 1 - 2)
SET_MAX = 31  # IPSET_MAXNAMELEN - 1
FILTER_BUILTINS = ("INPUT", "FORWARD", "OUTPUT")
NAT_BUILTINS = ("PREROUTING", "OUTPUT", "POSTROUTING")
BUILTINS = ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING")
FAMILIES = ("v4", "v6")
