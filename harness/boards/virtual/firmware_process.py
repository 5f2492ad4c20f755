"""Run the native firmware (``hil-firmware``, firmware/host) as a child process.

It speaks the ``hil-services`` protocol (firmware/services/README.md), extended: besides the ready line and
one reply per stdin command, it prints stack events as they happen (JSON lines with an ``event`` member, the
``HIL_EVENT`` fields: ``link_up``, ``link_down``, ``got_ip``, ``lost_ip``, ``dhcp``), and answers ``ip``,
``heap`` and ``sockets`` too. Events are set aside while a reply is awaited and can be waited for.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness.boards.virtual.services_process import ServicesProcess
from harness.boards.virtual.stackbuild import build_firmware
from harness.errors import DutTimeoutError


class FirmwareProcess(ServicesProcess):
    """A running ``hil-firmware``; use as a context manager so it is always stopped.

    Args:
        flavour: ``smoltcp`` (the stack under test, on ``ifname`` through AF_PACKET) or ``linux`` (the
            kernel's sockets).
        ifname: the DUT interface (smoltcp flavour).
        mac: the stack's MAC address (smoltcp flavour; required there).
        static: ``IP/PREFIX[/GW]`` instead of DHCP (smoltcp flavour).
        options: more ``hil-firmware`` options without the dashes, e.g. ``{"heap-bytes": 524288,
            "listen-pool": 2}`` (see firmware/host/app/hil_firmware_main.c).
        sanitize: run the AddressSanitizer/UBSan build.
        **services: the `ServicesProcess` arguments (services and their ports, netns, faults, ...).
    """

    def __init__(
        self,
        *,
        flavour: str = "smoltcp",
        ifname: str = "eth0",
        mac: str | None = None,
        static: str | None = None,
        options: dict[str, int | str] | None = None,
        sanitize: bool = False,
        **services: Any,
    ) -> None:
        super().__init__(**services)
        self.flavour = flavour
        self._sanitize = sanitize
        extra: list[str] = []
        if flavour == "smoltcp":
            extra += ["--ifname", ifname, *(["--mac", mac] if mac else []), *(["--static", static] if static else [])]
        for name, value in (options or {}).items():
            extra += [f"--{name}", str(value)]
        self._args = [*extra, *self._args]
        self.events: list[dict[str, Any]] = []
        self.ready: dict[str, Any] = {}

    def start(self) -> FirmwareProcess:
        """Build the firmware if needed, start it and wait for its ready line."""
        if self._binary is None:
            self._binary = build_firmware(self.flavour, sanitize=self._sanitize)
        super().start()
        return self

    def _read_json(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._read_line(max(0.0, deadline - time.monotonic()))
            value = json.loads(line)
            if "event" in value:
                self.events.append(value)
                continue
            if "ready" in value:
                self.ready = value
            return value

    def command(self, name: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """Send one command (``stats``, ``sockets``, ``ip``, ``heap``) and return its reply."""
        self._send(f"{name}\n".encode())
        return self._read_json(timeout_s)

    def wait_event(self, event: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The first event named ``event`` (already seen or arriving within ``timeout_s``).

        Raises:
            DutTimeoutError: it did not come.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            for seen in self.events:
                if seen["event"] == event:
                    return seen
            left = deadline - time.monotonic()
            if left <= 0:
                raise DutTimeoutError(f"no {event} event within {timeout_s} s; events: {self.events}")
            try:
                line = self._read_line(left)
            except DutTimeoutError:
                continue
            value = json.loads(line)
            if "event" in value:
                self.events.append(value)

    @property
    def binary(self) -> Path | None:
        """The program being run."""
        return self._binary
