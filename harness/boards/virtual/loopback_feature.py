"""`loopback`: the self-check of the in-RAM 127.0.0.0/8 path (firmware/PROTOCOL.md) on the virtual board.

hil_app sends UDP datagrams from a socket bound to 127.0.0.1 to itself through the lwIP-compat shim's
loopback, the path esp_http_server's control socket depends on; the twin uses the kernel's loopback.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

from harness.boards.virtual.registry import command

if TYPE_CHECKING:
    from harness.boards.virtual.firmware import Firmware

DATAGRAMS = 16
MAX_SIZE = 1472
RECV_TIMEOUT_S = 1.0


def datagram(index: int) -> bytes:
    """Datagram ``index`` of the self-check: a size that grows to 1472 bytes, bytes counting from ``index``."""
    size = 1 + index * (MAX_SIZE - 1) // (DATAGRAMS - 1)
    return bytes((index + i) % 256 for i in range(size))


MODES = ("recvfrom", "recv", "ephemeral")


@command("loopback", "self-check of the in-RAM 127.0.0.0/8 loopback: loopback [recvfrom|recv|ephemeral]")
def loopback(fw: Firmware, args: list[str]) -> None:
    # The kernel's loopback serves every mode alike; the modes exist for the esp-smoltcp shim's paths.
    mode = args[0] if len(args) == 1 else "recvfrom"
    if len(args) > 1 or mode not in MODES:
        fw.result("loopback", ok=False, error="usage: loopback [recvfrom|recv|ephemeral]")
        return
    started = time.monotonic()
    received = corrupted = nbytes = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(RECV_TIMEOUT_S)
        for index in range(DATAGRAMS):
            sent = datagram(index)
            sock.sendto(sent, sock.getsockname())
            try:
                got = sock.recv(MAX_SIZE + 1)
            except OSError:
                continue
            received += 1
            nbytes += len(got)
            corrupted += got != sent
    fields = {"mode": mode, "sent": DATAGRAMS, "received": received, "bytes": nbytes,
              "duration_us": int((time.monotonic() - started) * 1e6)}  # fmt: skip
    if received < DATAGRAMS:
        fw.result("loopback", ok=False, error=f"lost {DATAGRAMS - received} of {DATAGRAMS} datagrams", **fields)
    elif corrupted:
        fw.result("loopback", ok=False, error=f"{corrupted} of {DATAGRAMS} datagrams came back altered", **fields)
    else:
        fw.result("loopback", **fields)
