"""The virtual ESP32-P4 itself: console pty, reset and boot straps, ROM, flash, bootloader and the running app.

Runs as one process inside the DUT namespace. It owns what survives a reset on a real board (the
USB-serial pty, the SPI flash) and on every reset does what the chip does:

- IO0 high (SPI boot): the ROM banner ``boot:0x30f (SPI_FAST_FLASH_BOOT)``, then the boot decision for
  what is in flash (`image.decide_boot`). A bootable app prints the 2nd-stage bootloader's lines and
  starts the app (`firmware.py`: hil_app's console around the native firmware), which is told the flashed
  app's descriptor (environment variable ``HIL_VIRTUAL_APP``, JSON). Erased or corrupt flash prints the
  real failure lines and loops: ROM banner again with the reset reason of that failure, paced like the
  real loop, until the next reset.
- IO0 low (download mode): ``boot:0x307 (DOWNLOAD(USB/UART0/SPI))`` and ``waiting for download``, then
  the ROM serial loader (`rom.RomLoader`) answers esptool on the pty until a reset or until esptool
  asks to run the flashed app.

A brand-new board (its flash file does not exist yet) is factory-programmed with the board's own image
(`factory_image`), so it boots out of the box and ``erase-flash`` + reset gives a real boot loop.

It prints one JSON line on stdout once ready: ``{"port": "/dev/pts/N", "control": "<unix socket>",
"pid": N, "flash_dir": ...}``.

Control requests (one JSON object per line on the unix socket, one JSON reply):
``{"op": "reset"}`` pulses EN with IO0 high (normal boot; a power-on style reset);
``{"op": "download"}`` pulses EN with IO0 low (download mode);
``{"op": "hold"}`` holds EN low (chip stopped until the next reset);
``{"op": "power", "on": false}`` removes power (``true`` powers on and boots);
``{"op": "status"}`` reports state, app pid, boots, boot mode and flash directory.
When the firmware process dies by a signal (killed, hung) the board stays silent until reset, like
a hung chip.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path
from typing import Any

from harness import __version__
from harness.boards.virtual import bootlog
from harness.boards.virtual.factory_image import FactoryApp, program_factory_image
from harness.boards.virtual.firmware import EXIT_RESET_BASE, IDF_VERSION, STACKS, firmware_sha256
from harness.boards.virtual.flash import FLASH_FILE_NAME, SpiFlash
from harness.boards.virtual.image import (
    PARTITION_TABLE_MAX,
    PARTITION_TABLE_OFFSET,
    BootDecision,
    ImageError,
    decide_boot,
    format_rev,
    parse_partition_table,
)
from harness.boards.virtual.rom import RomExit, RomLoader, parse_chip_rev
from harness.lab.netns import LOCK_DIR
from harness.processes import signal_group, spawn

APP_ENV = "HIL_VIRTUAL_APP"
UNIX_PATH_MAX = 108

# ROM without a 2nd-stage bootloader: it retries the header read and the main watchdog resets the chip
# (pattern of the ESP32-C3's ROM, the same ROM family: a burst of `invalid header` lines, then a
# watchdog reset). A failing 2nd-stage bootloader calls bootloader_reset(): a software system reset.
ROM_INVALID_HEADER_LINES = 8
ROM_RETRY_S = 0.04
ROM_LOOP_RESET = 0x07  # HP_SYS_HP_WDT_RESET
BOOTLOADER_LOOP_RESET = 0x03  # SW_SYS_RESET
BOOTLOADER_RESET_DELAY_S = 0.1
JOIN_TIMEOUT_S = 5.0
_LOG_LINE = re.compile(r"^([IWE]) \(\d+\) ")


def colour(line: str) -> str:
    """Colour an ``L (ms) tag: text`` line as ESP-IDF does with CONFIG_LOG_COLORS; other lines pass."""
    match = _LOG_LINE.match(line)
    if match is None:
        return line
    return f"{bootlog.LEVEL_COLOURS[match.group(1)]}{line}{bootlog.COLOUR_RESET}"


class VirtualChip:
    """Resets, boots and supervises the firmware process; serves download mode."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.chip_rev = parse_chip_rev(args.chip_rev)
        self.flash_dir = Path(args.flash_dir)
        factory_new = not (self.flash_dir / FLASH_FILE_NAME).exists()
        self.flash = SpiFlash(self.flash_dir)
        if factory_new:
            program_factory_image(self.flash, twin_descriptor(), self.chip_rev)
        self.master, self.slave = os.openpty()
        # Raw mode: the board's output must not echo back to it as input, and bytes pass unaltered.
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        self.loader = RomLoader(self.master, self.flash, mac=args.mac, chip_rev=self.chip_rev)
        self.app: subprocess.Popen | None = None
        self.boots = 0
        self.state = "off"
        self.boot_mode: str | None = None
        self.last_boot: dict[str, Any] = {}
        self._lock = threading.RLock()  # guards the fields above
        self._transition = threading.Lock()  # one reset at a time
        self._activity: tuple[threading.Thread, threading.Event] | None = None
        self._closing = threading.Event()

    # --- console ----------------------------------------------------------------------------------------

    def write_console(self, lines: list[str]) -> None:
        """Print lines from the ROM/bootloader side (before the app owns the UART)."""
        data = "".join(line + "\r\n" for line in lines).encode()
        with contextlib.suppress(BlockingIOError, OSError):  # UART output nobody reads is lost on hardware too
            os.write(self.master, data)

    def _discard_input(self) -> None:
        # Bytes the host sent before the reset never reach the new boot's UART.
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.master, 65536):
                pass

    # --- reset line and straps ----------------------------------------------------------------------------

    def reset(self, *, download: bool = False, reset_code: int = bootlog.POWERON) -> None:
        """Pulse EN: stop whatever runs, then boot from flash or into download mode."""
        with self._transition:
            self._halt("reset")
            if self._closing.is_set():
                return
            self._discard_input()
            stop = threading.Event()
            thread = threading.Thread(target=self._boot, args=(stop, download, reset_code), name="boot", daemon=True)
            with self._lock:
                self._activity = (thread, stop)
                # Replies to the reset request already show where the chip is going.
                self.state, self.boot_mode = ("download", "download") if download else ("booting", "spi")
            thread.start()

    def hold(self, state: str = "held") -> None:
        """Hold EN low (or remove power): nothing runs until the next reset."""
        with self._transition:
            self._halt(state)

    def _halt(self, state: str) -> None:
        with self._lock:
            activity, self._activity = self._activity, None
            if activity is not None:
                activity[1].set()
            self._stop_app()
            self._reset_ethernet()
            self.state = state
        if activity is not None and activity[0] is not threading.current_thread():
            activity[0].join(timeout=JOIN_TIMEOUT_S)

    # --- boot ------------------------------------------------------------------------------------------------

    def _boot(self, stop: threading.Event, download: bool, reset_code: int) -> None:
        banner = True
        while not stop.is_set():
            if download:
                self._set(state="download", boot_mode="download", count=True)
                self.write_console(bootlog.rom_banner(reset_code, bootlog.BOOT_DOWNLOAD))
                if self.loader.serve(stop) is not RomExit.RUN_APP:
                    return
                download, banner = False, False  # the ROM jumps to the flash bootloader: no reset, no banner
                continue
            started = time.monotonic()
            decision = decide_boot(self.flash, chip_rev=self.chip_rev)
            # A chip that cannot boot is in its boot loop from the first line on: a status asked between two
            # rounds must not read "booting".
            self._set(state="booting" if decision.boots else "boot_loop", boot_mode="spi", count=banner,
                      decision=decision)  # fmt: skip
            if banner:
                self.write_console(bootlog.rom_banner(reset_code)[:4] if not self._has_bootloader(decision)
                                   else bootlog.rom_banner(reset_code))  # fmt: skip
            if decision.boots:
                self.write_console(self._bootloader_lines(decision, started))
                self._start_app(stop, int((time.monotonic() - started) * 1000) + 120, decision)
                return
            if self._has_bootloader(decision):
                self.write_console(self._bootloader_lines(decision, started))
                stop.wait(BOOTLOADER_RESET_DELAY_S)
                reset_code = BOOTLOADER_LOOP_RESET
            else:
                for line in decision.lines * ROM_INVALID_HEADER_LINES:
                    self.write_console([line])
                    if stop.wait(ROM_RETRY_S):
                        return
                reset_code = ROM_LOOP_RESET
            banner = True

    @staticmethod
    def _has_bootloader(decision: BootDecision) -> bool:
        return decision.reason != "no bootloader"

    def _bootloader_lines(self, decision: BootDecision, started: float) -> list[str]:
        """The 2nd-stage bootloader's header, the partition table it read and the decision's lines."""
        ms = int((time.monotonic() - started) * 1000) + 25
        header = bootlog.bootloader_lines(ms, IDF_VERSION, format_rev(self.chip_rev))
        cut = next(i for i, line in enumerate(header) if "Partition Table:" in line)
        lines = header[:cut] + self._partition_lines(ms)
        # The app prints its own app_init block (firmware.py, from HIL_VIRTUAL_APP), as on hardware.
        lines += [colour(line) for line in decision.lines if " app_init: " not in line]
        return lines

    def _partition_lines(self, ms: int) -> list[str]:
        try:
            partitions = parse_partition_table(self.flash.read(PARTITION_TABLE_OFFSET, PARTITION_TABLE_MAX))
        except ImageError:
            return []  # the decision's lines say what is wrong with it
        rows = ["Partition Table:", "## Label            Usage          Type ST Offset   Length"]
        for index, part in enumerate(partitions):
            usage = "factory app" if (part.type, part.subtype) == (0, 0) else "app" if part.type == 0 else "data"
            rows.append(f"{index:2d} {part.label:<16} {usage:<16} {part.type:02x} {part.subtype:02x} "
                        f"{part.offset:08x} {part.size:08x}")  # fmt: skip
        rows.append("End of partition table")
        return [bootlog.log_line("I", ms, "boot", row) for row in rows]

    def _set(self, *, state: str, boot_mode: str | None = None, count: bool = False,
             decision: BootDecision | None = None) -> None:  # fmt: skip
        with self._lock:
            self.state = state
            if boot_mode is not None:
                self.boot_mode = boot_mode
            if count:
                self.boots += 1
            if decision is not None:
                self.last_boot = {"boots": decision.boots, "reason": decision.reason,
                                  "app": flashed_app_json(decision)}  # fmt: skip

    def _start_app(self, stop: threading.Event, boot_ms: int, decision: BootDecision) -> None:
        command = [
            sys.executable, "-m", "harness.boards.virtual.firmware", "--console-fd", str(self.master),
            "--ifname", self.args.ifname, "--mac", self.args.mac, "--chip-rev", format_rev(self.chip_rev),
            "--boot-ms", str(boot_ms), "--stack", self.args.stack,
        ]  # fmt: skip
        for fault in self.args.fault:
            command += ["--fault", fault]
        env = {**os.environ, APP_ENV: json.dumps(flashed_app_json(decision))}
        with self._lock:
            if stop.is_set():  # a reset came in while the bootloader ran
                return
            # It dies with this process: a supervisor that is killed takes its firmware along.
            self.app = spawn(command, pass_fds=(self.master,), stdin=subprocess.DEVNULL, env=env)
            self.state = "running"
            threading.Thread(target=self._wait_app, args=(self.app,), daemon=True).start()

    def _wait_app(self, app: subprocess.Popen) -> None:
        code = app.wait()
        signal_group(app.pid, signal.SIGKILL)  # the native firmware (and its udhcpc) die with it, as on a reset
        with self._lock:
            if app is not self.app or self._closing.is_set():
                return
            if code is None or code < EXIT_RESET_BASE:
                # Killed or crashed without a reset: the chip is hung until someone pulses EN.
                self.state = "hung" if code is not None and code < 0 else "halted"
                return
        self.reset(reset_code=code - EXIT_RESET_BASE)

    def _stop_app(self) -> None:
        app, self.app = self.app, None
        if app is not None and app.poll() is None:
            signal_group(app.pid, signal.SIGKILL)
            app.wait(timeout=5)
        elif app is not None:
            signal_group(app.pid, signal.SIGKILL)

    def _reset_ethernet(self) -> None:
        # A chip reset also resets the EMAC/PHY: carrier drops and the address is gone.
        for args in (("link", "set", "dev", self.args.ifname, "down"), ("addr", "flush", "dev", self.args.ifname)):
            subprocess.run(["ip", *args], capture_output=True, timeout=10, check=False)

    # --- status and shutdown --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Board state for the control channel."""
        with self._lock:
            pid = self.app.pid if self.app is not None else None
            return {
                "state": self.state, "app_pid": pid, "boots": self.boots, "boot_mode": self.boot_mode,
                "port": self.port, "flash_dir": str(self.flash_dir), "last_boot": self.last_boot,
            }  # fmt: skip

    def close(self) -> None:
        """Stop the firmware and the loader, release the pty and the flash file."""
        self._closing.set()
        with self._transition:
            self._halt("off")
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.flash.close()


def twin_descriptor() -> FactoryApp:
    """The descriptor of the board's own app, as its factory image carries it."""
    return FactoryApp("hil_app", __version__, IDF_VERSION, firmware_sha256())


def flashed_app_json(decision: BootDecision) -> dict[str, str] | None:
    """What ``HIL_VIRTUAL_APP`` carries: the booted image's descriptor."""
    if decision.app is None:
        return None
    desc = decision.app.descriptor
    return {
        "project_name": desc.project_name, "version": desc.version, "idf_version": desc.idf_ver,
        "elf_sha256": desc.app_elf_sha256, "compile_time": f"{desc.date} {desc.time}",
    }  # fmt: skip


def control_socket_path(state_dir: Path) -> Path:
    """The control socket: in the state directory, unless that path is too long for AF_UNIX (108 bytes)."""
    path = state_dir / "control.sock"
    if len(str(path).encode()) < UNIX_PATH_MAX:
        return path
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    return LOCK_DIR / f"vb-{digest}.sock"


def serve_control(chip: VirtualChip, server: socket.socket, stop: threading.Event) -> None:
    """Answer control requests until ``stop`` is set."""
    server.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        except OSError as exc:
            if exc.errno == errno.EBADF:
                return
            raise
        with conn:
            conn.settimeout(5)
            try:
                request = json.loads(conn.makefile().readline() or "{}")
                reply = handle_request(chip, request)
            except (ValueError, OSError) as exc:
                reply = {"ok": False, "error": str(exc)}
            with contextlib.suppress(OSError):
                conn.sendall((json.dumps(reply) + "\n").encode())


def handle_request(chip: VirtualChip, request: dict[str, Any]) -> dict[str, Any]:
    """One control request."""
    op = request.get("op")
    if op == "reset":
        chip.reset()
    elif op == "download":
        chip.reset(download=True)
    elif op == "hold":
        chip.hold()
    elif op == "power":
        if request.get("on", True):
            chip.reset()
        else:
            chip.hold("off")
    elif op != "status":
        return {"ok": False, "error": f"unknown op {op!r}; known: reset, download, hold, power, status"}
    return {"ok": True, **chip.status()}


def main(argv: list[str] | None = None) -> int:
    """Process entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--flash-dir", type=Path, help="the board's flash (default: STATE_DIR/flash); persists")
    parser.add_argument("--ifname", default="eth0")
    parser.add_argument("--mac", required=True)
    parser.add_argument("--chip-rev", default="v1.0")
    parser.add_argument("--stack", choices=STACKS, default="smoltcp", help="the native firmware's network stack")
    parser.add_argument("--fault", action="append", default=[])
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    args.flash_dir = args.flash_dir or args.state_dir / "flash"
    control_path = control_socket_path(args.state_dir)
    control_path.unlink(missing_ok=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    chip = VirtualChip(args)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(control_path))
    server.listen(8)
    control = threading.Thread(target=serve_control, args=(chip, server, stop), daemon=True)
    # The socket listens before the ready line goes out: the harness connects as soon as it reads it.
    control.start()
    try:
        ready = {"port": chip.port, "control": str(control_path), "pid": os.getpid(), "flash_dir": str(chip.flash_dir)}
        print(json.dumps(ready), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        chip.close()
        server.close()
        control_path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
