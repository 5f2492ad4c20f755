"""The virtual ESP32-P4 itself: console pty, reset line, ROM and bootloader, and the running app.

Runs as one process inside the DUT namespace. It owns what survives a reset on a real board (the
USB-serial pty, the cable) and restarts the firmware process on every reset. It prints one JSON line
on stdout once ready: ``{"port": "/dev/pts/N", "control": "<unix socket>", "pid": N}``.

Control requests (one JSON object per line on the unix socket, one JSON reply):
``{"op": "reset"}`` pulses EN (a power-on style reset; the board starts powered but held in reset);
``{"op": "status"}`` reports the app process.
When the firmware process dies by a signal (killed, hung) the board stays silent until reset, like
a hung chip.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path
from typing import Any

from harness.boards.virtual import bootlog
from harness.boards.virtual.firmware import EXIT_RESET_BASE, IDF_VERSION


class VirtualChip:
    """Resets, boots and supervises the firmware process."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.master, self.slave = pty.openpty()
        # Raw mode: the board's output must not echo back to it as input, and bytes pass unaltered.
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.app: subprocess.Popen | None = None
        self.boots = 0
        self.state = "off"
        self._lock = threading.RLock()
        self._closing = threading.Event()

    def write_console(self, lines: list[str]) -> None:
        """Print lines from the ROM/bootloader side (before the app owns the UART)."""
        data = "".join(line + "\r\n" for line in lines).encode()
        os.set_blocking(self.master, False)
        with contextlib.suppress(BlockingIOError):  # UART output nobody reads is lost on hardware too
            os.write(self.master, data)

    def power_on(self, reset_code: int = bootlog.POWERON) -> None:
        """Run the ROM and bootloader, then start the firmware process."""
        with self._lock:
            self._stop_app()
            self._reset_ethernet()
            started = time.monotonic()
            self.write_console(bootlog.rom_banner(reset_code))
            self.write_console(bootlog.bootloader_lines(int((time.monotonic() - started) * 1000) + 25,
                                                        IDF_VERSION, self.args.chip_rev))  # fmt: skip
            boot_ms = int((time.monotonic() - started) * 1000) + 120
            command = [
                sys.executable, "-m", "harness.boards.virtual.firmware", "--console-fd", str(self.master),
                "--ifname", self.args.ifname, "--mac", self.args.mac, "--chip-rev", self.args.chip_rev,
                "--boot-ms", str(boot_ms),
            ]  # fmt: skip
            for fault in self.args.fault:
                command += ["--fault", fault]
            self.app = subprocess.Popen(
                command, pass_fds=(self.master,), start_new_session=True, stdin=subprocess.DEVNULL
            )
            self.boots += 1
            self.state = "running"
            threading.Thread(target=self._wait_app, args=(self.app,), daemon=True).start()

    def _wait_app(self, app: subprocess.Popen) -> None:
        code = app.wait()
        _kill_group(app.pid)  # the firmware's own helpers (iperf3) die with it, as on a reset
        with self._lock:
            if app is not self.app or self._closing.is_set():
                return
            if code is not None and code >= EXIT_RESET_BASE:
                self.power_on(code - EXIT_RESET_BASE)
            else:
                # Killed or crashed without a reset: the chip is hung until someone pulses EN.
                self.state = "hung" if code < 0 else "halted"

    def _stop_app(self) -> None:
        app, self.app = self.app, None
        if app is not None and app.poll() is None:
            _kill_group(app.pid, signal.SIGKILL)
            app.wait(timeout=5)
        elif app is not None:
            _kill_group(app.pid)

    def _reset_ethernet(self) -> None:
        # A chip reset also resets the EMAC/PHY: carrier drops and the address is gone.
        for args in (("link", "set", "dev", self.args.ifname, "down"), ("addr", "flush", "dev", self.args.ifname)):
            subprocess.run(["ip", *args], capture_output=True, timeout=10, check=False)

    def status(self) -> dict[str, Any]:
        """Board state for the control channel."""
        with self._lock:
            pid = self.app.pid if self.app is not None else None
            return {"state": self.state, "app_pid": pid, "boots": self.boots, "port": self.port}

    def close(self) -> None:
        """Stop the firmware and release the pty."""
        self._closing.set()
        with self._lock:
            self._stop_app()
            self.state = "off"
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def serve_control(chip: VirtualChip, path: Path, stop: threading.Event, listening: threading.Event) -> None:
    """Answer control requests until ``stop`` is set; ``listening`` is set once the socket accepts connections."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(4)
        server.settimeout(0.2)
        listening.set()
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
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
        chip.power_on(bootlog.POWERON)
        return {"ok": True, **chip.status()}
    if op == "status":
        return {"ok": True, **chip.status()}
    return {"ok": False, "error": f"unknown op {op!r}; known: reset, status"}


def main(argv: list[str] | None = None) -> int:
    """Process entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--ifname", default="eth0")
    parser.add_argument("--mac", required=True)
    parser.add_argument("--chip-rev", default="v1.0")
    parser.add_argument("--fault", action="append", default=[])
    parser.add_argument(
        "--power-on",
        action="store_true",
        help="boot at once (otherwise wait for a reset request, so a console opened first sees the whole boot log)",
    )
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    control_path = args.state_dir / "control.sock"
    control_path.unlink(missing_ok=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    chip = VirtualChip(args)
    listening = threading.Event()
    control = threading.Thread(target=serve_control, args=(chip, control_path, stop, listening), daemon=True)
    control.start()
    # The harness connects as soon as it reads the ready line: the socket must be there by then.
    listening.wait(10)
    try:
        print(json.dumps({"port": chip.port, "control": str(control_path), "pid": os.getpid()}), flush=True)
        if args.power_on:
            chip.power_on(bootlog.POWERON)
        while not stop.wait(0.5):
            pass
    finally:
        chip.close()
        control_path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
