"""Serve the virtual ESP32-P4 ROM loader on a fresh pty: ``python -m harness.boards.virtual.rom_cli --flash-dir DIR``.

Prints one JSON line ``{"port": "/dev/pts/N", "flash_dir": ..., "mac": ..., "chip_rev": ..., "pid": ...}``
on stdout once the port is ready, then serves until SIGTERM or SIGINT. The board stays in download
mode: when esptool asks to run the flashed app (``--after soft-reset`` or RUN_USER_CODE), the boot
decision for what is in flash is printed on the port and as a JSON line on stdout, and the loader
goes back to waiting for esptool.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import tty
from types import FrameType

from harness.boards.virtual.flash import SpiFlash
from harness.boards.virtual.image import decide_boot
from harness.boards.virtual.rom import RomExit, RomLoader, parse_chip_rev
from harness.errors import HilError

DEFAULT_MAC = "60:55:f9:f0:00:01"


def open_raw_pty() -> tuple[int, int, str]:
    """Open a pty whose slave is in raw mode; return (master fd, slave fd, slave path).

    The caller keeps the slave fd open so the master never reads EIO between two esptool runs.
    """
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def _emit(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


def serve_forever(loader: RomLoader, flash: SpiFlash, stop: threading.Event) -> None:
    """Serve ROM download mode until ``stop`` is set; report every request to run the app."""
    while not stop.is_set():
        reason = loader.serve(stop)
        if reason is RomExit.RUN_APP:
            decision = decide_boot(flash, chip_rev=loader.chip_rev)
            os.write(loader.fd, "".join(line + "\r\n" for line in decision.lines).encode())
            _emit({"event": "run_app", "boot": decision.to_json()})
        elif reason is RomExit.PORT_CLOSED:
            return


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m harness.boards.virtual.rom_cli", description=__doc__)
    parser.add_argument("--flash-dir", required=True, help="directory holding this board's flash file")
    parser.add_argument("--mac", default=DEFAULT_MAC, help=f"base MAC in eFuse (default {DEFAULT_MAC})")
    parser.add_argument("--chip-rev", default="v1.0", help="chip revision, e.g. v1.0 (default) or v3.1")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        chip_rev = parse_chip_rev(args.chip_rev)
        flash = SpiFlash(args.flash_dir)
    except HilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    master, slave, port = open_raw_pty()
    try:
        loader = RomLoader(master, flash, mac=args.mac, chip_rev=chip_rev)
        major, minor = divmod(chip_rev, 100)
        _emit(
            {
                "port": port,
                "flash_dir": os.path.abspath(args.flash_dir),
                "mac": loader.mac.hex(":"),
                "chip_rev": f"v{major}.{minor}",
                "pid": os.getpid(),
            }
        )
        serve_forever(loader, flash, stop)
    finally:
        os.close(master)
        os.close(slave)
        flash.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
