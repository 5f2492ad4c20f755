"""The firmware twin: hil_app's behaviour on the virtual ESP32-P4, run as a process in the DUT namespace.

It owns the console (a pty handed over by the supervisor) and the DUT end of the lab cable. What it
reports comes from real sources: kernel counters, a real DHCP exchange, real sockets.

The supervisor restarts it after it exits with ``EXIT_RESET_BASE + <reset code>`` (a software reset,
a panic, a watchdog), which is how `reboot` and crashes become a new boot with the right `rst:` line.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib
import ipaddress
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from harness import __version__
from harness.boards.virtual import bootlog
from harness.boards.virtual.crashes import crash_lines, reset_reason_for
from harness.boards.virtual.dhcp_client import FAULTS as DHCP_CLIENT_FAULTS
from harness.boards.virtual.dhcp_client import DhcpClient
from harness.boards.virtual.httpd import HilHttpServer
from harness.boards.virtual.linkwatch import watch_carrier
from harness.boards.virtual.netstats import NetStats
from harness.boards.virtual.registry import COMMANDS, FAULT_MECHANISMS, SERVICES
from harness.console.protocol import PROMPT, format_machine_line, split_command

EXIT_RESET_BASE = 64
# Modules that register console commands and boot-time services (see registry.py).
FEATURE_MODULES = (
    "harness.boards.virtual.core_commands",
    "harness.boards.virtual.services_feature",
    "harness.boards.virtual.mqtt_feature",
    "harness.boards.virtual.tls_feature",
    "harness.boards.virtual.mcast_feature",
    "harness.boards.virtual.l2_feature",
    "harness.boards.virtual.loopback_feature",
    "harness.boards.virtual.fault_feature",
)
HTTP_PORT = 80
IDF_VERSION = "v5.5-virtual"
COMPONENT_VERSIONS = {"esp_smoltcp": "virtual", "esp_smoltcp_lwip_compat": "virtual"}
FRAME_POOL = (32, 1600)
# HIL_HELLO.services: the ports firmware/PROTOCOL.md gives each service (the twin serves all of them).
SERVICE_PORTS = {
    "http": 80, "https": 443, "tcp_echo": 7, "udp_echo": 7, "select_echo_tcp": 7000, "select_echo_udp": 7001,
    "select_echo_udp_count": 4, "iperf3": 5201, "mcast_echo": 5007, "l2_echo_ethertype": 0x88B5,
}  # fmt: skip
# Catalogue names of the DHCP client's faults (harness/boards/virtual/faults.py) -> the client's own names.
CATALOGUE_DHCP_FAULTS = {"no_dhcp_renewal": "no_renewal", "dhcp_nak_ignored": "ignore_nak"}
FAULT_MECHANISMS.update(CATALOGUE_DHCP_FAULTS)


def firmware_sha256() -> str:
    """SHA256 over the twin's own source: it identifies exactly the code that answers on the wire."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def app_descriptor() -> bootlog.AppDescriptor:
    """The running app's descriptor: the flashed image's when the supervisor says so, else the twin's own."""
    flashed = os.environ.get("HIL_VIRTUAL_APP")
    fields = json.loads(flashed) if flashed else None
    if fields:
        return bootlog.AppDescriptor(
            fields["project_name"], fields["version"], fields["idf_version"], fields["elf_sha256"],
            fields.get("compile_time") or bootlog.AppDescriptor.compile_time,
        )  # fmt: skip
    return bootlog.AppDescriptor("hil_app", __version__, IDF_VERSION, firmware_sha256())


class Console:
    """The firmware's UART: writes never block (a full buffer drops output, as a UART FIFO would)."""

    def __init__(self, fd: int, started: float) -> None:
        self.fd = fd
        self.started = started
        self.dropped_bytes = 0
        self._lock = threading.Lock()
        os.set_blocking(fd, False)

    def ms(self) -> int:
        """Milliseconds since this boot, as ESP-IDF's log timestamps count."""
        return int((time.monotonic() - self.started) * 1000)

    def write(self, text: str) -> None:
        """Write raw text."""
        data = text.encode()
        with self._lock:
            while data:
                try:
                    written = os.write(self.fd, data)
                except BlockingIOError:
                    self.dropped_bytes += len(data)
                    return
                except OSError as exc:
                    if exc.errno == errno.EIO:  # nobody has the port open: bytes go nowhere
                        return
                    raise
                data = data[written:]

    def line(self, text: str) -> None:
        """Write one line with ESP-IDF's CRLF ending."""
        self.write(text + "\r\n")

    def log(self, level: str, tag: str, message: str) -> None:
        """Write one ESP-IDF log line."""
        self.line(bootlog.log_line(level, self.ms(), tag, message))

    def machine(self, keyword: str, fields: dict[str, Any]) -> None:
        """Write one HIL_* machine line (uncoloured, like ESP_LOGI with colours off for tag hil)."""
        self.line(format_machine_line(keyword, self.ms(), fields))

    def prompt(self) -> None:
        """Print the REPL prompt."""
        self.write(PROMPT)


class Firmware:
    """hil_app on the virtual board."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ifname: str = args.ifname
        self.mac: str = args.mac
        self.console = Console(args.console_fd, time.monotonic() - args.boot_ms / 1000)
        self.stop = threading.Event()
        self.stats = NetStats(self.ifname)
        self.lease: dict[str, Any] = {}
        self.stats_period_s = 0.0
        self._stats_wakeup = threading.Event()
        self.services: Any = None
        self._shutdown_hooks: list[Callable[[], Any]] = []
        self.app = app_descriptor()

    # --- boot ---------------------------------------------------------------------------------------------

    def boot(self) -> None:
        """Everything from app start to the first prompt."""
        for line in bootlog.app_start_lines(self.console.ms(), self.app, self.args.chip_rev):
            self.console.line(line)
        slots, size = FRAME_POOL
        self.console.log("I", "net_stack", f"frame pool: {slots} slots × {size} B = {slots * size // 1024} KiB")
        _ip("link", "set", "dev", self.ifname, "address", self.mac)
        _ip("link", "set", "dev", self.ifname, "up")
        self.stats.start_counting()
        self.console.log("I", "net_stack", f"ETH attached, MAC {self.mac}, DHCPv4 client started")
        for fault in self.args.fault:
            if fault not in FAULT_MECHANISMS:  # `hil selftest` reads this line: the fault is not implemented
                self.console.log("W", "hil", f"unknown fault {fault} (no mechanism in this firmware; ignored)")
        self._start_services()
        self.console.machine("HIL_HELLO", self.hello())
        threading.Thread(target=self._watch_link, name="link", daemon=True).start()
        threading.Thread(target=self._run_dhcp, name="dhcp", daemon=True).start()
        threading.Thread(target=self._periodic_stats, name="stats", daemon=True).start()
        self.stats.settle_heap()

    def hello(self) -> dict[str, Any]:
        """The HIL_HELLO fields."""
        return {
            "app": self.app.project_name,
            "app_version": self.app.version,
            "idf": self.app.idf_version,
            "components": COMPONENT_VERSIONS,
            "chip": "esp32p4",
            "chip_rev": self.args.chip_rev,
            "mac": self.mac,
            "board": "virtual",
            "elf_sha256": self.app.elf_sha256,
            "services": SERVICE_PORTS,
        }

    def _start_services(self) -> None:
        server = HilHttpServer(HTTP_PORT, self.stats_snapshot, firmware=self)
        server.start()
        for start in SERVICES:
            start(self)

    # --- network events -------------------------------------------------------------------------------------

    def _watch_link(self) -> None:
        def on_change(up: bool) -> None:
            if up:
                self.stats.link_ups += 1
                self.console.log("I", "net_stack", "ETH link up")
            else:
                self.stats.link_downs += 1
                self.console.log("I", "net_stack", "ETH link down")
            self.console.machine("HIL_EVENT", {"event": "link_up" if up else "link_down", "iface": "eth"})

        watch_carrier(self.ifname, on_change, self.stop)

    def _run_dhcp(self) -> None:
        # The client takes only its own faults (catalogue or client names); the rest belong to other features.
        faults = frozenset(CATALOGUE_DHCP_FAULTS.get(name, name) for name in self.args.fault) & DHCP_CLIENT_FAULTS
        client = DhcpClient(self.ifname, self.mac, on_event=self._on_dhcp_event, faults=faults)
        client.run(self.stop)

    def _on_dhcp_event(self, name: str, fields: dict[str, Any]) -> None:
        if name == "got_ip":
            self.lease = dict(fields)
            self.console.machine(
                "HIL_EVENT",
                {"event": "got_ip", "iface": "eth", "ip": fields["ip"], "netmask": fields["netmask"],
                 "gw": fields.get("gw") or "0.0.0.0", "lease_s": fields.get("lease_s", 0)},
            )  # fmt: skip
        elif name == "lost_ip":
            self.lease = {}
            self.console.machine("HIL_EVENT", {"event": "lost_ip", "iface": "eth", "ip": fields.get("ip", "")})
        elif name == "dhcp":
            self.console.machine("HIL_EVENT", {"event": "dhcp", "iface": "eth", **fields})

    # --- stats ------------------------------------------------------------------------------------------------

    def stats_snapshot(self) -> dict[str, Any]:
        """The HIL_STATS object (also served by GET /stats)."""
        return {"proto": 1, "iface": "eth", **self.stats.snapshot(self.console.ms())}

    def _periodic_stats(self) -> None:
        while not self.stop.is_set():
            period = self.stats_period_s
            self._stats_wakeup.wait(period if period > 0 else None)
            self._stats_wakeup.clear()
            if self.stats_period_s > 0 and period > 0:
                self.console.machine(
                    "HIL_STATS", {"trigger": "period", "iface": "eth", **self.stats.snapshot(self.console.ms())}
                )

    # --- console ----------------------------------------------------------------------------------------------

    def repl(self) -> int:
        """Read commands until a command asks for a reset; return the process exit code."""
        self.console.prompt()
        pending = b""
        while not self.stop.is_set():
            ready, _, _ = select.select([self.console.fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(self.console.fd, 4096)
            except BlockingIOError:
                continue
            pending += data.replace(b"\r", b"\n")
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                exit_code = self.execute(raw.decode(errors="replace"))
                if exit_code is not None:
                    return exit_code
                if raw.strip():
                    self.console.prompt()
        return 0

    def execute(self, line: str) -> int | None:
        """Run one command line; return an exit code when the command resets the chip."""
        argv = split_command(line)
        if not argv:
            return None
        known = COMMANDS.get(argv[0])
        if known is None:
            self.result(argv[0], ok=False, error=f"unknown command '{argv[0]}', try 'help'")
            return None
        return known.handler(self, argv[1:])

    def result(self, cmd: str, ok: bool = True, **fields: Any) -> None:
        """Print the closing HIL_RESULT of a command."""
        self.console.machine("HIL_RESULT", {"cmd": cmd, "ok": ok, **fields})

    def print_stats(self, trigger: str) -> None:
        """Print one HIL_STATS line."""
        self.console.machine(
            "HIL_STATS", {"trigger": trigger, "iface": "eth", **self.stats.snapshot(self.console.ms())}
        )

    def set_stats_period(self, period_s: float) -> None:
        """Change the periodic HIL_STATS interval (0 stops it)."""
        self.stats_period_s = period_s
        self._stats_wakeup.set()

    def ipv6_link_local(self) -> str:
        """The interface's fe80:: address, or an empty string."""
        try:
            with open("/proc/net/if_inet6") as table:
                for row in table:
                    hexaddr, _, _, scope, _, name = row.split()
                    if name == self.ifname and scope == "20":
                        return str(ipaddress.IPv6Address(bytes.fromhex(hexaddr)))
        except OSError:
            pass
        return ""

    @staticmethod
    def reset_exit_code(reset_code: int) -> int:
        """The exit code that makes the supervisor boot again with this `rst:` reset reason."""
        return EXIT_RESET_BASE + reset_code

    def crash(self, kind: str, task: str) -> NoReturn:
        """Crash the chip from any task: print what ESP-IDF prints for ``kind``, then reset with its reason."""
        for line in crash_lines(kind, ms=self.console.ms(), elf_sha256=self.app.elf_sha256, task=task):
            self.console.line(line)
        code, _ = reset_reason_for(kind)
        self.shutdown()
        os._exit(self.reset_exit_code(code))

    def shutdown(self) -> None:
        """Stop background work before the process exits (the supervisor resets the interface)."""
        self.stop.set()
        for hook in reversed(self._shutdown_hooks):
            with contextlib.suppress(Exception):
                hook()

    def has_fault(self, name: str) -> bool:
        """Whether the board was started with this fault from the catalogue (harness/boards/virtual/faults.py)."""
        return name in self.args.fault

    def on_shutdown(self, hook: Callable[[], Any]) -> None:
        """Run ``hook`` when the firmware stops (a feature's cleanup)."""
        self._shutdown_hooks.append(hook)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def main(argv: list[str] | None = None) -> int:
    """Process entry point (started by the supervisor)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--console-fd", type=int, required=True)
    parser.add_argument("--ifname", default="eth0")
    parser.add_argument("--mac", required=True)
    parser.add_argument("--chip-rev", default="v1.0")
    parser.add_argument("--boot-ms", type=int, default=0, help="ms already spent in ROM and bootloader")
    parser.add_argument("--fault", action="append", default=[])
    args = parser.parse_args(argv)
    for module in FEATURE_MODULES:
        importlib.import_module(module)
    firmware = Firmware(args)
    try:
        firmware.boot()
        return firmware.repl()
    finally:
        firmware.shutdown()


if __name__ == "__main__":
    sys.exit(main())
