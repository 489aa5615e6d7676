"""Reading an ipset's elements and their counters straight from the kernel (netlink).

A one-rule change reads the counters of the few elements it deletes. `ipset save NAME`
prints every element of the set, and for each port it calls `getprotobynumber`, which
opens and scans /etc/protocols: 15-25 ms for a 4,096-element set, two thirds of a
legacy one-rule change at 50k rules. The kernel's own dump of the same set (the
`IPSET_CMD_LIST` request `ipset` itself sends) takes about a millisecond; decoding only
the elements that carry the wanted rule tags keeps it there.

Elements are spelled as `ipset save` spells them (a /32 or /128 net as a bare address,
`proto:port`), so the callers compare them with the bundle's keys as before. Anything
this reader cannot spell exactly (an unknown protocol, `nomatch`, a type it does not
know) makes it answer None and the caller falls back to `ipset save`.

Stdlib only (the agent installs on its own): `socket.AF_NETLINK` and `struct`. A runner
that works in another network namespace (`ip netns exec NS`, `Runner.netns`) gets a socket
opened in that namespace by a short-lived thread that enters it (`setns`, through ctypes:
Python 3.11 has no `os.setns`); a socket stays in the namespace it was created in.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import threading
from collections.abc import Collection, Iterator

from rampart_agent.dataplane.base import LiveElement, LiveSet

NETLINK_NETFILTER = 12
NFNL_SUBSYS_IPSET = 6
IPSET_CMD_LIST = 7
IPSET_PROTOCOL = 7  # kernels since 5.x speak 7; 6 is the floor ipset itself accepts
MSG_LIST = (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_LIST
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED (0x8000) and NLA_F_NET_BYTEORDER (0x4000)
CLONE_NEWNET = 0x40000000
TIMEOUT = 10.0  # seconds; the dump of a 3k-element set takes ~3 ms

# attributes (linux/netfilter/ipset/ip_set.h)
ATTR_PROTOCOL, ATTR_SETNAME, ATTR_TYPENAME, ATTR_FAMILY, ATTR_DATA, ATTR_ADT = 1, 2, 3, 5, 7, 8
ATTR_IP, ATTR_CIDR, ATTR_PORT, ATTR_PROTO, ATTR_CADT_FLAGS = 1, 3, 4, 7, 8
ATTR_IP2, ATTR_CIDR2, ATTR_BYTES, ATTR_PACKETS, ATTR_COMMENT = 20, 21, 24, 25, 26
IPADDR_IPV4, IPADDR_IPV6 = 1, 2
NFPROTO_IPV4, NFPROTO_IPV6 = 2, 10
FLAG_NOMATCH = 1 << 2  # IPSET_FLAG_NOMATCH, in an element's ATTR_CADT_FLAGS
# in the header's ATTR_CADT_FLAGS: the set's options
FLAG_WITH_COUNTERS, FLAG_WITH_COMMENT = 1 << 3, 1 << 4

# the protocols a port element of ours names, as /etc/protocols names them
PROTO_NAMES = {6: "tcp", 17: "udp", 132: "sctp", 136: "udplite"}
# the parts of an element's value, in the order `ipset save` prints them, per set type
LAYOUTS = {
    "hash:net": ("net",),
    "hash:net,port": ("net", "port"),
    "hash:ip,port,net": ("ip", "port", "net2"),
    "hash:ip,port,ip": ("ip", "port", "ip2"),
}

_HDR = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")
_BE64 = struct.Struct(">Q")
_BE16 = struct.Struct(">H")
_BE32 = struct.Struct(">I")


class Unreadable(Exception):
    """The kernel's answer holds something this reader cannot spell as `ipset save`."""


def _socket_in(netns: str | None) -> socket.socket:
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_open() -> None:  # this thread alone enters the namespace, then ends
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER))
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=enter_and_open, name="rpt-netns-socket")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def _attr(kind: int, payload: bytes) -> bytes:
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


def _request(name: str, seq: int) -> bytes:
    body = struct.pack("=BBH", NFPROTO_IPV4, 0, 0)  # nfgenmsg: family, version, res_id
    body += _attr(ATTR_PROTOCOL, bytes([IPSET_PROTOCOL]))
    body += _attr(ATTR_SETNAME, name.encode() + b"\0")
    return _HDR.pack(_HDR.size + len(body), MSG_LIST, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _attrs(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type without flags, payload start, payload end) of the attributes in buf[start:end]."""
    while start + _NLA.size <= end:
        length, kind = _NLA.unpack_from(buf, start)
        if length < _NLA.size:
            return
        yield kind & NLA_TYPE_MASK, start + _NLA.size, start + length
        start += (length + 3) & ~3


def dump(name: str, netns: str | None = None) -> list[bytes] | None:
    """The kernel's answer to `list NAME`: the payloads (after nfgenmsg) of its messages;
    None when the kernel says there is no such set. OSError: no such namespace, no
    permission, no ipset in this kernel, no answer within TIMEOUT."""
    with _socket_in(netns) as sock:
        sock.settimeout(TIMEOUT)  # never hold the apply lock on a kernel that does not answer
        sock.bind((0, 0))
        sock.sendall(_request(name, 1))
        out: list[bytes] = []
        while True:
            data = sock.recv(1 << 20)
            at = 0
            while at + _HDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _HDR.unpack_from(data, at)
                if length < _HDR.size:
                    raise OSError(errno.EPROTO, "bad netlink message")
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, at + _HDR.size)
                    if code == 0:
                        at += (length + 3) & ~3
                        continue
                    if -code == errno.ENOENT:
                        return None
                    raise OSError(-code, f"ipset list {name}: {os.strerror(-code)}")
                if kind == MSG_LIST:
                    out.append(data[at + _HDR.size + 4 : at + length])
                at += (length + 3) & ~3


def _address(buf: bytes, start: int, end: int) -> str:
    """The address in an IPSET_ATTR_IP nest (one IPADDR_IPV4 or IPADDR_IPV6 attribute)."""
    if start + _NLA.size <= end:
        kind = _NLA.unpack_from(buf, start)[1] & NLA_TYPE_MASK
        at = start + _NLA.size
        if kind == IPADDR_IPV4:
            return socket.inet_ntop(socket.AF_INET, buf[at : at + 4])
        if kind == IPADDR_IPV6:
            return socket.inet_ntop(socket.AF_INET6, buf[at : at + 16])
    raise Unreadable("an address attribute without an address")


def _element(buf: bytes, start: int, end: int, layout: tuple[str, ...]) -> LiveElement:
    """One element (the attributes of an IPSET_ATTR_DATA nest), spelled as `ipset save`."""
    at: dict[int, tuple[int, int]] = {}
    unpack, pos = _NLA.unpack_from, start
    while pos + _NLA.size <= end:  # `_attrs` inlined: 121k elements at 50k rules
        length, kind = unpack(buf, pos)
        if length < _NLA.size:
            break
        at[kind & NLA_TYPE_MASK] = (pos + _NLA.size, pos + length)
        pos += (length + 3) & ~3
    if ATTR_CADT_FLAGS in at and _be32(buf, at[ATTR_CADT_FLAGS][0]) & FLAG_NOMATCH:
        raise Unreadable("a nomatch element")
    parts = []
    for part in layout:
        if part == "port":
            proto = buf[at[ATTR_PROTO][0]] if ATTR_PROTO in at else None
            if proto not in PROTO_NAMES or ATTR_PORT not in at:
                raise Unreadable(f"protocol {proto} with a port")
            parts.append(f"{PROTO_NAMES[proto]}:{_BE16.unpack_from(buf, at[ATTR_PORT][0])[0]}")
            continue
        first = part in ("net", "ip")
        where = at.get(ATTR_IP if first else ATTR_IP2)
        if where is None:
            raise Unreadable(f"an element without its {part}")
        address = _address(buf, *where)
        length = at.get(ATTR_CIDR if first else ATTR_CIDR2)
        if part.startswith("net") and length is not None and buf[length[0]] != _host(address):
            address = f"{address}/{buf[length[0]]}"
        parts.append(address)
    comment = None
    if ATTR_COMMENT in at:
        a, b = at[ATTR_COMMENT]
        comment = buf[a:b].split(b"\0", 1)[0].decode()
    return LiveElement(
        ",".join(parts),
        comment,
        _BE64.unpack_from(buf, at[ATTR_PACKETS][0])[0] if ATTR_PACKETS in at else 0,
        _BE64.unpack_from(buf, at[ATTR_BYTES][0])[0] if ATTR_BYTES in at else 0,
    )


def _be32(buf: bytes, at: int) -> int:
    return int(_BE32.unpack_from(buf, at)[0])


def _options(buf: bytes, start: int, end: int) -> str:
    """The `counters` and `comment` options of a set's header (the create line this reader
    gives names the type, family and these: what the agent decides by, not the sizes)."""
    for kind, a, _b in _attrs(buf, start, end):
        if kind == ATTR_CADT_FLAGS:
            flags = _be32(buf, a)
            return "".join(
                f" {word}"
                for flag, word in ((FLAG_WITH_COUNTERS, "counters"), (FLAG_WITH_COMMENT, "comment"))
                if flags & flag
            )
    return ""


def _host(address: str) -> int:
    return 128 if ":" in address else 32


def read_set(
    name: str, netns: str | None = None, tags: Collection[str] | None = None
) -> LiveSet | None:
    """The set's elements with their counters (None: no such set). `tags`: only the
    elements whose comment contains one of these strings (a rule's uuid) are decoded,
    the way a one-rule change reads the few elements it deletes.
    Unreadable: something this reader cannot spell (the caller asks `ipset save`)."""
    messages = dump(name, netns)
    if messages is None:
        return None
    needles = [t.encode() for t in tags] if tags is not None else None
    live: LiveSet | None = None
    layout: tuple[str, ...] = ()
    for buf in messages:
        for kind, a, b in _attrs(buf, 0, len(buf)):
            if kind == ATTR_TYPENAME and live is None:
                typename = buf[a:b].split(b"\0", 1)[0].decode()
                if typename not in LAYOUTS:
                    raise Unreadable(f"set type {typename}")
                layout = LAYOUTS[typename]
                live = LiveSet(f"create {name} {typename}")
            elif kind == ATTR_FAMILY and live is not None:
                live.create += " family inet6" if buf[a] == NFPROTO_IPV6 else " family inet"
            elif kind == ATTR_DATA and live is not None:
                live.create += _options(buf, a, b)
            elif kind == ATTR_ADT and live is not None:
                if needles is not None and not any(buf.find(n, a, b) >= 0 for n in needles):
                    continue  # none of the wanted elements in this message
                for _data, s, e in _attrs(buf, a, b):
                    if needles is None or any(buf.find(n, s, e) >= 0 for n in needles):
                        live.elements.append(_element(buf, s, e, layout))
    if live is None:
        raise Unreadable(f"no header in the kernel's answer for {name}")
    return live
