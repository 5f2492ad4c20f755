"""The firmware's portable C services (firmware/services) on the virtual board, and the commands that report them.

The same C code the ESP-IDF app compiles runs here as `hil-services`: the iperf3 server, the select()
echo service, TCP and UDP echo, on the ports firmware/PROTOCOL.md gives.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness.boards.virtual.netstats import HEAP_SIZE
from harness.boards.virtual.registry import command, fault_mechanism, service
from harness.boards.virtual.services_process import SelectEchoPorts, ServicesProcess
from harness.errors import HilError

if TYPE_CHECKING:
    from harness.boards.virtual.firmware import Firmware

fault_mechanism("socket_slot_leak", "udp_never_readable")  # catalogue faults (faults.py) this module implements


IPERF3_PORT = 5201
ECHO_PORT = 7
SELECT_ECHO = SelectEchoPorts(tcp=7000, udp_base=7001, udp_count=4)
# The shim's FD table: CONFIG_LWIP_MAX_SOCKETS sockets from LWIP_SOCKET_OFFSET (PROTOCOL.md, `sockets`).
FD_BASE = 0
FDS_MAX = 1024


@service
def start_services(fw: Firmware) -> None:
    """Start hil-services; it lives in the firmware's process group, so a reset ends it too."""
    binary = os.environ.get("HIL_SERVICES_BINARY")
    services = ServicesProcess(
        iperf3=IPERF3_PORT, select_echo=SELECT_ECHO, tcp_echo=ECHO_PORT, udp_echo=ECHO_PORT,
        binary=Path(binary) if binary else None, own_session=False, faults=tuple(fw.args.fault),
    )  # fmt: skip
    services.start()
    fw.services = services
    fw.on_shutdown(services.close)


def _socket_fds(pid: int) -> int:
    try:
        return sum(1 for fd in os.scandir(f"/proc/{pid}/fd") if os.readlink(fd.path).startswith("socket:"))
    except OSError:
        return 0


@command("sockets", "open sockets and FD table use, with the select() echo service's counters")
def sockets(fw: Firmware, args: list[str]) -> None:
    services = fw.services
    if services is None:
        fw.result("sockets", ok=False, error="services not running")
        return
    try:
        select_echo = services.stats().get("select_echo", {})
    except HilError as exc:
        fw.result("sockets", ok=False, error=f"services not answering: {exc}")
        return
    snapshot = fw.stats.snapshot(fw.console.ms())
    used = _socket_fds(os.getpid()) + _socket_fds(services.pid)
    fw.result("sockets", active_sockets=snapshot["active_sockets"], sockets_max=FDS_MAX, fds_used=used, fds_max=FDS_MAX,
              fd_base=FD_BASE, select_echo=select_echo)  # fmt: skip


@command("heap", "free, minimum free and largest block of the heap, per capability")
def heap(fw: Firmware, args: list[str]) -> None:
    free = fw.stats.heap_free()
    entry = {"total": HEAP_SIZE, "free": free, "min_free": fw.stats.heap_min_free, "largest_block": free}
    fw.result("heap", free=free, min_free=fw.stats.heap_min_free, largest_block=free,
              caps={"default": entry, "internal": entry})  # fmt: skip
