"""hil_app's console on the virtual ESP32-P4, around the native firmware that does all of its networking.

The supervisor starts this process on every boot with the console pty. It prints the app's boot lines,
starts ``hil-firmware`` (firmware/host: the firmware's services on smoltcp through the BSD-socket shim,
or on the kernel's stack for ``--stack linux``) and speaks PROTOCOL.md on the console: the firmware's
events become ``HIL_EVENT`` lines, its counters ``HIL_STATS``, its command replies ``HIL_RESULT``; its log
lines (stderr) are the console's. What is the chip's stays here: the boot lines, ``HIL_HELLO``, the
command dispatch, ``reboot`` and ``crash``, and what a crash prints.

It exits with ``EXIT_RESET_BASE + <reset code>`` when the chip resets (``reboot``, a crash, a crash fault
of the firmware, the firmware dying), which the supervisor turns into a new boot with that ``rst:`` line.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import platform
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, NoReturn

from harness import __version__
from harness.boards.virtual import bootlog
from harness.boards.virtual.crashes import CRASH_KINDS, crash_lines, reset_reason_for
from harness.boards.virtual.kind import STACKS
from harness.console.protocol import PROMPT, format_machine_line, split_command
from harness.paths import certs_dir, firmware_dir
from harness.processes import spawn

EXIT_RESET_BASE = 64
IDF_VERSION = "v5.5-virtual"
# The native firmware the board runs, built by the board before it starts (stackbuild.build_firmware).
FIRMWARE_ENV = "HIL_FIRMWARE_BINARY"
# What `components` in HIL_HELLO names for the smoltcp stack besides smoltcp itself: this project's own
# runtime and shim stand where the board has esp_smoltcp and esp_smoltcp_lwip_compat.
VIRTUAL_COMPONENTS = {"esp_smoltcp": "virtual", "esp_smoltcp_lwip_compat": "virtual"}
# hil_app's services on PROTOCOL.md's ports, as hil-firmware options.
SERVICE_OPTIONS = (
    "--iperf3", "5201", "--select-echo", "7000", "7001", "4", "--tcp-echo", "7", "--udp-echo", "7",
    "--http", "80", "--https", "443", "--mcast-echo", "5007", "--l2-echo", "0x88b5",
)  # fmt: skip
L2_ECHO_ETHERTYPE = 0x88B5
# hil_app's sdkconfig.defaults values the smoltcp runtime and shim take as options (the board's budgets).
SDKCONFIG_OPTIONS = {
    "CONFIG_NETSTACK_MAX_SOCKETS": "--max-sockets",
    "CONFIG_LWIP_COMPAT_MAX_FDS": "--fd-count",
    "CONFIG_LWIP_COMPAT_LISTENER_POOL": "--listen-pool",
    "CONFIG_ETH_DMA_TX_BUFFER_NUM": "--tx-ring",
}
READY_TIMEOUT_S = 30.0
# A command may take as long as PROTOCOL.md allows (`mqtt connect` 10 s, `tls get` 10 s per step).
COMMAND_TIMEOUT_S = 60.0
# Commands of the chip's own side; every other PROTOCOL.md command is the firmware's.
HELP = {
    "help": "list commands",
    "version": "print HIL_HELLO again",
    "stats": "print HIL_STATS now; 'stats period <s>' prints them every s seconds (0 stops)",
    "reboot": "software reset (esp_restart)",
    "crash": "crash on purpose: panic|abort|wdt|stack_overflow|rust_panic",
    "ip": "address, netmask, gateway, MAC and IPv6 link-local address of the Ethernet interface",
    "heap": "free, minimum free and largest block of the heap, per capability",
    "sockets": "socket handles and FD table in use, with the select() echo service's counters",
    "mqtt": "mqtt connect <uri> | mqtt disconnect",
    "tls": "tls get <https-url>: GET verified against the HIL test CA",
    "mcast": "mcast join|leave <group> on the multicast echo socket",
    "l2tap": "l2tap on|off <ethertype>: L2 echo for an EtherType",
    "loopback": "self-check of the in-RAM 127.0.0.0/8 loopback: loopback [recvfrom|recv|ephemeral]",
}
FIRMWARE_COMMANDS = ("ip", "heap", "sockets", "mqtt", "tls", "mcast", "l2tap", "loopback")
PROTOCOL_CRASH_KINDS = ("panic", "abort", "wdt", "stack_overflow", "rust_panic")
# How the firmware process ending by itself shows on the chip: a fault of the C/Rust code is a panic.
SIGNAL_CRASHES = {signal.SIGSEGV: "panic", signal.SIGBUS: "panic", signal.SIGILL: "panic", signal.SIGFPE: "panic"}


def firmware_binary() -> Path | None:
    """The native firmware this board runs (None when the board was started without one)."""
    path = os.environ.get(FIRMWARE_ENV)
    return Path(path) if path else None


def firmware_sha256() -> str:
    """SHA256 over the console side's sources and the native firmware: exactly the code that answers."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    binary = firmware_binary()
    if binary is not None and binary.is_file():
        digest.update(binary.read_bytes())
    return digest.hexdigest()


def board_options() -> list[str]:
    """hil-firmware options for the board's budgets, read from firmware/hil_app/sdkconfig.defaults."""
    options: list[str] = []
    for line in (firmware_dir() / "hil_app" / "sdkconfig.defaults").read_text().splitlines():
        name, _, value = line.partition("=")
        if name in SDKCONFIG_OPTIONS:
            options += [SDKCONFIG_OPTIONS[name], value]
    return options


def busybox_version() -> str:
    """The version of busybox (whose udhcpc is the linux stack's DHCP client), e.g. ``1.35.0``."""
    try:
        banner = subprocess.run(["busybox"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return "unknown"
    found = re.search(r"BusyBox v(\S+)", banner)
    return found.group(1) if found else "unknown"


def stack_components(stack: str) -> dict[str, str]:
    """HIL_HELLO.components of a stack: smoltcp's version from Cargo.lock, or the kernel's and udhcpc's."""
    if stack == "linux":
        return {"linux": platform.release(), "udhcpc": busybox_version()}
    from harness.boards.virtual.stackbuild import smoltcp_version

    return {"smoltcp": smoltcp_version(), **VIRTUAL_COMPONENTS}


def app_descriptor() -> bootlog.AppDescriptor:
    """The running app's descriptor: the flashed image's when the supervisor says so, else the board's own."""
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
    """hil_app on the virtual board: the console side here, the network in ``hil-firmware``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.console = Console(args.console_fd, time.monotonic() - args.boot_ms / 1000)
        self.stop = threading.Event()
        self.app = app_descriptor()
        self.process: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._command_lock = threading.Lock()
        self._hello_printed = threading.Event()
        self._held_events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self.stats_period_s = 0.0
        self._stats_wakeup = threading.Event()

    # --- boot ---------------------------------------------------------------------------------------------

    def boot(self) -> bool:
        """Everything from app start to the first prompt; False when the firmware did not come up."""
        for line in bootlog.app_start_lines(self.console.ms(), self.app, self.args.chip_rev):
            self.console.line(line)
        binary = firmware_binary()
        if binary is None:
            self.console.log("E", "hil", f"no native firmware: {FIRMWARE_ENV} is not set")
            return False
        self.process = spawn(
            [str(binary), "--ifname", self.args.ifname, "--mac", self.args.mac, *SERVICE_OPTIONS,
             "--certs", str(certs_dir()), *(board_options() if self.args.stack == "smoltcp" else [])],
            own_group=False, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "HIL_FAULTS": ",".join(self.args.fault),
                 "HIL_UPTIME_AT_START_MS": str(self.console.ms())},
        )  # fmt: skip
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._forward_logs, args=(self.process.stderr,), name="logs", daemon=True).start()
        threading.Thread(target=self._read_firmware, args=(self.process.stdout,), name="fw", daemon=True).start()
        try:
            ready = self._replies.get(timeout=READY_TIMEOUT_S)
        except queue.Empty:
            ready = {"error": f"no ready line within {READY_TIMEOUT_S:g} s"}
        if not ready or not ready.get("ready"):
            error = (ready or {}).get("error", "it exited")
            self.console.log("E", "hil", f"the native firmware did not start: {error}")
            return False
        self.ready = ready
        for fault in ready.get("unknown_faults", []):  # `hil selftest` reads this line: the fault is not implemented
            self.console.log("W", "hil", f"unknown fault {fault} (no mechanism in this firmware; ignored)")
        self.console.machine("HIL_HELLO", self.hello())
        with self._events_lock:
            for event in self._held_events:
                self.console.machine("HIL_EVENT", event)
            self._held_events.clear()
            self._hello_printed.set()
        threading.Thread(target=self._periodic_stats, name="stats", daemon=True).start()
        return True

    def hello(self) -> dict[str, Any]:
        """The HIL_HELLO fields; the services' ports are the ones the firmware bound."""
        bound = self.ready.get("services", {})
        udp_select = bound.get("select_echo", {}).get("udp", [])
        services = {
            "http": bound.get("http", {}).get("tcp", [None])[0],
            "https": bound.get("https", {}).get("tcp", [None])[0],
            "tcp_echo": bound.get("tcp_echo", {}).get("tcp", [None])[0],
            "udp_echo": bound.get("udp_echo", {}).get("udp", [None])[0],
            "select_echo_tcp": bound.get("select_echo", {}).get("tcp", [None])[0],
            "select_echo_udp": udp_select[0] if udp_select else None,
            "select_echo_udp_count": len(udp_select),
            "iperf3": bound.get("iperf3", {}).get("tcp", [None])[0],
            "mcast_echo": bound.get("mcast_echo", {}).get("udp", [None])[0],
            "l2_echo_ethertype": L2_ECHO_ETHERTYPE,
        }
        return {
            "app": self.app.project_name,
            "app_version": self.app.version,
            "idf": self.app.idf_version,
            "components": stack_components(self.args.stack),
            "chip": "esp32p4",
            "chip_rev": self.args.chip_rev,
            "mac": self.args.mac,
            "board": "virtual",
            "stack": self.args.stack,
            "elf_sha256": self.app.elf_sha256,
            "services": {name: port for name, port in services.items() if port is not None},
        }

    # --- the firmware's output ------------------------------------------------------------------------------

    def _forward_logs(self, stream: IO[bytes]) -> None:
        """The firmware's log lines are the console's (ESP-IDF format already)."""
        for raw in stream:
            self.console.line(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _read_firmware(self, stream: IO[bytes]) -> None:
        """Events go to the console as HIL_EVENT lines; everything else is the reply to a command."""
        for raw in stream:
            try:
                value = json.loads(raw)
            except ValueError:
                self.console.log("W", "hil", f"firmware printed {raw[:120]!r}")
                continue
            if "event" not in value:
                self._replies.put(value)
            elif value["event"] == "crash":
                self.crash(value.get("kind", "abort"), value.get("task", "main"))
            else:
                self._event(value)
        self._replies.put(None)
        self._firmware_ended()

    def _event(self, fields: dict[str, Any]) -> None:
        with self._events_lock:
            if not self._hello_printed.is_set():
                self._held_events.append(fields)  # PROTOCOL.md: HIL_HELLO comes first
                return
        self.console.machine("HIL_EVENT", fields)

    def _firmware_ended(self) -> None:
        """The firmware process ended without a crash event: a fault of its code, which the chip shows as a crash."""
        process = self.process
        if process is None or self.stop.is_set():
            return
        code = process.wait()
        if self.stop.is_set():
            return
        kind = SIGNAL_CRASHES.get(signal.Signals(-code), "abort") if code < 0 else "abort"
        self.console.log("E", "hil", f"the native firmware ended (exit status {code})")
        self.crash(kind, "net_poll")

    # --- stats ------------------------------------------------------------------------------------------------

    def stats_fields(self) -> dict[str, Any] | None:
        """The HIL_STATS fields (without proto and trigger), or None when the firmware does not answer."""
        reply = self.firmware_command("stats")
        net = (reply or {}).get("net")
        if not net:
            return None
        return {key: value for key, value in net.items() if key not in ("proto", "trigger")}

    def print_stats(self, trigger: str) -> None:
        """Print one HIL_STATS line."""
        fields = self.stats_fields()
        if fields is not None:
            self.console.machine("HIL_STATS", {"trigger": trigger, **fields})

    def _periodic_stats(self) -> None:
        while not self.stop.is_set():
            period = self.stats_period_s
            self._stats_wakeup.wait(period if period > 0 else None)
            self._stats_wakeup.clear()
            if self.stats_period_s > 0 and period > 0:
                self.print_stats("period")

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
        word, args = argv[0], argv[1:]
        if word in FIRMWARE_COMMANDS:
            self._forward(word, line)
        elif word == "help":
            for name in sorted(HELP):
                self.console.line(f"  {name} - {HELP[name]}")
            self.result("help", commands=sorted(HELP))
        elif word == "version":
            self.console.machine("HIL_HELLO", self.hello())
            self.result("version")
        elif word == "stats":
            self._stats_command(args)
        elif word == "reboot":
            self.result("reboot")
            self.console.line("Rebooting...")
            return self.reset_exit_code(bootlog.SW_CPU_RESET)
        elif word == "crash":
            if len(args) != 1 or args[0] not in CRASH_KINDS:
                self.result("crash", ok=False, error=f"usage: crash {'|'.join(PROTOCOL_CRASH_KINDS)}")
                return None
            self.result("crash", kind=args[0])
            self.crash(args[0], task="hil_console")
        else:
            self.result(word, ok=False, error="unknown command")
        return None

    def _forward(self, word: str, line: str) -> None:
        reply = self.firmware_command(" ".join(split_command(line)))
        if reply is None:
            self.result(word, ok=False, error="the network firmware does not answer")
        elif reply.get("cmd") == word:
            self.console.machine("HIL_RESULT", reply)
        else:
            self.result(word, ok=False, error=str(reply.get("error", "no reply")))

    def _stats_command(self, args: list[str]) -> None:
        if not args:
            self.print_stats("cmd")
            self.result("stats")
            return
        if len(args) == 2 and args[0] == "period":
            try:
                period = float(args[1])
            except ValueError:
                period = -1
            if period == 0 or 1 <= period <= 86400:
                self.stats_period_s = period
                self._stats_wakeup.set()
                self.result("stats", period_s=period)
                return
        self.result("stats", ok=False, error="usage: stats [period <s>]")

    def firmware_command(self, line: str, timeout_s: float = COMMAND_TIMEOUT_S) -> dict[str, Any] | None:
        """Send one line to the firmware and return its reply (None when it does not answer in time)."""
        process = self.process
        if process is None or process.stdin is None:
            return None
        with self._command_lock:
            try:
                process.stdin.write(line.encode() + b"\n")
                process.stdin.flush()
                return self._replies.get(timeout=timeout_s)
            except (OSError, queue.Empty):
                return None

    def result(self, cmd: str, ok: bool = True, **fields: Any) -> None:
        """Print the closing HIL_RESULT of a command."""
        self.console.machine("HIL_RESULT", {"cmd": cmd, "ok": ok, **fields})

    @staticmethod
    def reset_exit_code(reset_code: int) -> int:
        """The exit code that makes the supervisor boot again with this `rst:` reset reason."""
        return EXIT_RESET_BASE + reset_code

    def crash(self, kind: str, task: str) -> NoReturn:
        """Crash the chip from any thread: print what ESP-IDF prints for ``kind``, then reset with its reason."""
        self.shutdown()
        for line in crash_lines(kind, ms=self.console.ms(), elf_sha256=self.app.elf_sha256, task=task):
            self.console.line(line)
        code, _ = reset_reason_for(kind)
        os._exit(self.reset_exit_code(code))

    def shutdown(self) -> None:
        """Stop the firmware before this process exits (the supervisor resets the interface)."""
        self.stop.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()


def main(argv: list[str] | None = None) -> int:
    """Process entry point (started by the supervisor)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--console-fd", type=int, required=True)
    parser.add_argument("--ifname", default="eth0")
    parser.add_argument("--mac", required=True)
    parser.add_argument("--chip-rev", default="v1.0")
    parser.add_argument("--boot-ms", type=int, default=0, help="ms already spent in ROM and bootloader")
    parser.add_argument("--stack", choices=STACKS, default="smoltcp")
    parser.add_argument("--fault", action="append", default=[])
    args = parser.parse_args(argv)
    firmware = Firmware(args)
    try:
        if not firmware.boot():
            return 1
        return firmware.repl()
    finally:
        firmware.shutdown()


if __name__ == "__main__":
    sys.exit(main())
