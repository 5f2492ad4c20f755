"""Test helper: run ``python -m harness.boards.virtual.rom_cli`` as a subprocess and drive esptool at it."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT_S = 15
ESPTOOL_TIMEOUT_S = 120


class RomBoard:
    """A ROM-loader process serving a pty; use as a context manager (stops by PID, waits with a timeout)."""

    def __init__(self, flash_dir: Path, *, mac: str = "60:55:f9:f0:00:01", chip_rev: str = "v1.0") -> None:
        self.flash_dir = flash_dir
        self.mac = mac
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.boards.virtual.rom_cli",
                "--flash-dir",
                str(flash_dir),
                "--mac",
                mac,
                "--chip-rev",
                chip_rev,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            self.info = self.next_event(START_TIMEOUT_S)
        except Exception:
            self.close()
            raise
        self.port = self.info["port"]

    def next_event(self, timeout: float) -> dict:
        """The next JSON line the process prints on stdout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._selector.select(deadline - time.monotonic()):
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"rom_cli exited: {self.proc.stderr.read()}")
                return json.loads(line)
        raise TimeoutError(f"rom_cli printed nothing within {timeout} s")

    def esptool(
        self, *args: str, chip: str = "esp32p4", after: str = "no-reset", stub: bool = True
    ) -> subprocess.CompletedProcess:
        """Run the real esptool against this board's port; output is in ``stdout``."""
        command = [sys.executable, "-m", "esptool", "--chip", chip, "--port", self.port]
        command += ["--before", "no-reset", "--after", after, *([] if stub else ["--no-stub"]), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT_S, check=False)

    def close(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._selector.close()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def __enter__(self) -> RomBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
