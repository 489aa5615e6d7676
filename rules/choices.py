"""Choice sets for the policy models (values match the policy document)."""

from django.db import models


class Protocol(models.TextChoices):
    ANY = "any", "any"
    TCP = "tcp", "TCP"
    UDP = "udp", "UDP"
    ICMP = "icmp", "ICMP"
    ICMPV6 = "icmpv6", "ICMPv6"


class Chain(models.TextChoices):
    INPUT = "input", "input"
    OUTPUT = "output", "output"
    FORWARD = "forward", "forward"


class Action(models.TextChoices):
    ACCEPT = "accept", "accept"
    DROP = "drop", "drop"
    REJECT = "reject", "reject"


class NatType(models.TextChoices):
    SNAT = "snat", "SNAT"
    DNAT = "dnat", "DNAT"
    MASQUERADE = "masquerade", "masquerade"
    REDIRECT = "redirect", "redirect"


class NatChain(models.TextChoices):
    PREROUTING = "prerouting", "prerouting"
    OUTPUT = "output", "output"
    POSTROUTING = "postrouting", "postrouting"


NAT_CHAINS = {
    "dnat": ("prerouting", "output"),
    "snat": ("postrouting",),
    "masquerade": ("postrouting",),
    "redirect": ("prerouting", "output"),
}


class Side(models.TextChoices):
    SOURCE = "src", "source"
    DESTINATION = "dst", "destination"


class ConnState(models.TextChoices):
    NEW = "new", "new"
    ESTABLISHED = "established", "established"
    RELATED = "related", "related"
    INVALID = "invalid", "invalid"
    UNTRACKED = "untracked", "untracked"
    DNAT = "dnat", "dnat (port-forwarded; alone)"  # conntrack status: compiler/values.py


class DefaultAction(models.TextChoices):
    ACCEPT = "accept", "accept"
    DROP = "drop", "drop"
    REJECT = "reject", "reject"


class AgentStatus(models.TextChoices):
    """What the fleet last heard from a device's agent (kept on the device row)."""

    UNKNOWN = "unknown", "never seen"
    ONLINE = "online", "online"
    OFFLINE = "offline", "offline"
