"""Which addresses a TCP port listens on (read from /proc/net/tcp and tcp6, so no second network
interface is needed), and this machine's address as another machine would reach it."""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

__all__ = ["listening_addresses", "outside_address"]

_LISTEN = "0A"


def _address(hex_addr: str) -> str:
    """/proc/net/tcp* print each 32-bit word of an address in host byte order."""
    words = [int(hex_addr[i : i + 8], 16) for i in range(0, len(hex_addr), 8)]
    raw = b"".join(struct.pack("=I", w) for w in words)
    return str(ipaddress.ip_address(raw))


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on `port` (in this network namespace)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr, _, hex_port = local.partition(":")
            if state == _LISTEN and int(hex_port, 16) == port:
                found.add(_address(addr))
    return found


def outside_address() -> str | None:
    """A non-loopback IPv4 address of this machine (the one its default route leaves from, else
    one its host name resolves to), or None when it has none."""
    candidates = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # UDP: picks the source address, sends nothing
            candidates.append(s.getsockname()[0])
        except OSError:
            pass
    try:
        candidates += [
            i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        ]
    except OSError:
        pass
    for addr in candidates:
        ip = ipaddress.ip_address(addr)
        if not ip.is_loopback and not ip.is_unspecified:
            return addr
    return None
