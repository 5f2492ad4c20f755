"""`VirtualBoard`: the Board interface over the virtual ESP32-P4 supervisor process."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.boards.board import Board
from harness.boards.virtual.firmware import FIRMWARE_ENV
from harness.boards.virtual.stackbuild import build_firmware
from harness.console.monitor import ConsoleMonitor
from harness.errors import BoardError
from harness.lab.base import ManagedProcess
from harness.lab.traffic import steal_adjusted_floor
from harness.lab.veth import VethLab

READY_TIMEOUT_S = 15.0
CONTROL_TIMEOUT_S = 10.0


def control_request(control_path: str, op: str, timeout: float = CONTROL_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
    """Send one request to a virtual board's control socket and return the reply.

    Raises:
        BoardError: the socket did not answer, or the board refused the request.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(control_path)
            conn.sendall((json.dumps({"op": op, **fields}) + "\n").encode())
            reply = json.loads(conn.makefile().readline() or "{}")
    except (OSError, ValueError) as exc:
        raise BoardError(f"virtual board control channel {control_path} failed: {exc}") from exc
    if not reply.get("ok"):
        raise BoardError(f"virtual board refused {op}: {reply.get('error')}")
    return reply


def start_supervisor(lab: VethLab, state_dir: Path, *, flash_dir: Path, mac: str, stack: str,
                     chip_rev: str | None = None, faults: tuple[str, ...] = ()) -> ManagedProcess:  # fmt: skip
    """Build the native firmware and start the board's supervisor in the lab's DUT namespace.

    The firmware is built first, so a build problem is reported as such, not as a boot hang. The
    supervisor prints one ready line on its stdout (a pipe); its log is ``<state_dir>/supervisor.log``.
    """
    firmware = build_firmware(stack)
    command = [
        sys.executable, "-m", "harness.boards.virtual.supervisor", "--state-dir", str(state_dir),
        "--flash-dir", str(flash_dir), "--ifname", lab.dut_if, "--mac", mac, "--stack", stack,
        *(["--chip-rev", chip_rev] if chip_rev else []), *(f"--fault={fault}" for fault in faults),
    ]  # fmt: skip
    with open(state_dir / "supervisor.log", "ab") as stderr:
        return lab.spawn("virtual-board", command, ns=lab.dut, stdout=subprocess.PIPE, stderr=stderr,
                         env={**os.environ, FIRMWARE_ENV: str(firmware)})  # fmt: skip


def virtual_mac(run_id: str) -> str:
    """A stable, locally administered MAC per run (so concurrent runs differ)."""
    digest = hashlib.sha256(run_id.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


class VirtualBoard(Board):
    """The virtual ESP32-P4 in the lab's DUT namespace.

    Args:
        lab: the started lab whose DUT namespace the board lives in.
        log_dir: where the console log and the board's own logs go.
        faults: names from the fault catalogue the firmware starts with.
        stack: the native firmware's network stack, ``smoltcp`` or ``linux`` (the kernel's: the control arm).
    """

    kind = "virtual"

    def __init__(self, lab: VethLab, log_dir: Path, faults: tuple[str, ...] = (), stack: str = "smoltcp") -> None:
        super().__init__(log_dir)
        self.lab = lab
        self.faults = faults
        self.stack = stack
        self.mac = virtual_mac(lab.run_id)
        self.state_dir = log_dir / "virtual-board"
        self.flash_dir = self.state_dir / "flash"  # factory-programmed at first start; persists with the log dir
        self.process: ManagedProcess | None = None
        self._port = ""
        self._control = ""

    @property
    def port(self) -> str:
        """The pty the console is on."""
        return self._port

    def start(self, wait_online: bool = True) -> None:
        """Start the board process, open its console, and boot it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.process = start_supervisor(self.lab, self.state_dir, flash_dir=self.flash_dir, mac=self.mac,
                                        stack=self.stack, faults=self.faults)  # fmt: skip
        ready = self._read_ready()
        self._port, self._control = ready["port"], ready["control"]
        self.console = ConsoleMonitor(self._port, self.log_dir / "console.log").start()
        self.reset(wait_online=wait_online)

    def _read_ready(self) -> dict[str, Any]:
        assert self.process is not None
        stdout = self.process.popen.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], READY_TIMEOUT_S)
        line = stdout.readline() if ready else b""
        if not line:
            code = self.process.popen.poll()
            raise BoardError(
                f"virtual board did not start within {READY_TIMEOUT_S:g} s (exit code {code}); "
                f"see {self.state_dir / 'supervisor.log'}"
            )
        return json.loads(line)

    def control(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request to the board's control channel (reset line, status).

        Raises:
            BoardError: the channel failed; when the board process itself is gone, the message says so and
                names its log.
        """
        try:
            return control_request(self._control, op, **fields)
        except BoardError as exc:
            process = self.process
            if process is not None and not process.alive():
                raise BoardError(
                    f"the virtual board's supervisor (pid {process.pid}) is dead (exit status "
                    f"{process.popen.returncode}); its log: {self.state_dir / 'supervisor.log'}"
                ) from exc
            raise

    def hard_reset(self) -> None:
        """Pulse EN."""
        self.control("reset")

    def download_mode(self) -> None:
        """Pulse EN with IO0 low: the ROM loader answers esptool on `port` until the next reset."""
        self.control("download")

    def throughput_floor_mbps(self, floor_mbps: float, host_cpu_steal_pct: float) -> float:
        """The floor less the share of CPU the hypervisor stole: this "chip" runs on the lab machine's CPUs."""
        return steal_adjusted_floor(floor_mbps, host_cpu_steal_pct)

    def app_pid(self) -> int | None:
        """PID of the running app process (to simulate a hang by killing it)."""
        return self.control("status").get("app_pid")

    def dut_processes(self) -> list[int]:
        """The running app and its native firmware: the virtual DUT is processes of the lab machine."""
        pid = self.app_pid()
        if not pid:
            return []
        children: list[int] = []
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                children += [int(child) for child in task.read_text().split()]
            except (OSError, ValueError):
                continue
        return [pid, *children]

    def close(self) -> None:
        """Stop the console and the board process."""
        if self.console is not None:
            self.console.stop()
        if self.process is not None:
            self.process.stop()
            if self.process.popen.stdout is not None:
                self.process.popen.stdout.close()
