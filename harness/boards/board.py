"""The board interface scenarios use, and the protocol-level behaviour every board shares."""

from __future__ import annotations

import abc
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.console.monitor import ConsoleMonitor
from harness.errors import BoardError, DutTimeoutError
from harness.firmware.footprint import FirmwareFootprint

COMMAND_TIMEOUT_S = 10.0
BOOT_TIMEOUT_S = 20.0
IP_TIMEOUT_S = 30.0
_RESET_LINE = re.compile(r"rst:0x([0-9a-fA-F]+) \(([A-Z0-9_]+)\)")


@dataclass
class BootInfo:
    """What one boot looked like on the console."""

    mark: int
    reset_code: int | None = None
    reset_reason: str | None = None
    hello: dict[str, Any] = field(default_factory=dict)
    t_reset: float = 0.0
    t_link: float | None = None
    t_ip: float | None = None
    ip: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildInfo:
    """The ESP-IDF build of the firmware a board runs, as far as the harness knows it (`dut.app` shows it).

    Attributes:
        build_dir: the build directory (None: unknown, e.g. the virtual board's firmware twin).
        elf: the app ELF in it.
        sdkconfig: its `config/sdkconfig.json` (empty when unknown).
    """

    build_dir: Path | None = None
    elf: Path | None = None
    sdkconfig: Mapping[str, Any] = field(default_factory=dict)


class Board(abc.ABC):
    """A DUT running the HIL test firmware (firmware/PROTOCOL.md), seen through its console.

    Subclasses provide how the board is started, reset and stopped; everything that is plain protocol
    (commands, stats, waiting for the address) lives here so every board behaves the same. What differs
    between boards beyond that is an optional capability: a method here with a default that fits a real
    board (`throughput_floor_mbps`, `dut_processes`), overridden where a board differs. Nothing asks
    which kind a board is; `kind` is recorded with the results, never compared.
    """

    kind: str = "abstract"

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.console: ConsoleMonitor | None = None
        self.last_boot: BootInfo | None = None
        self.hello: dict[str, Any] = {}
        # Restarts the harness asked for (EN pulses, `reboot`); any other reset is unexpected.
        self.planned_restarts = 0

    # --- what each board implements ---------------------------------------------------------------------

    @abc.abstractmethod
    def start(self) -> None:
        """Power/flash the board as needed, open the console and bring the firmware online."""

    @abc.abstractmethod
    def hard_reset(self) -> None:
        """Pulse the board's reset line (EN); returns as soon as the reset was issued."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the board (console, processes, ports)."""

    @property
    @abc.abstractmethod
    def port(self) -> str:
        """The console port (device path or URL)."""

    # --- shared protocol behaviour ----------------------------------------------------------------------

    @property
    def monitor(self) -> ConsoleMonitor:
        """The console monitor; raises if the board was not started."""
        if self.console is None:
            raise BoardError("the board's console is not open: call start() first")
        return self.console

    def reset(self, wait_online: bool = True, timeout: float = BOOT_TIMEOUT_S) -> BootInfo:
        """Reset the board and follow its boot log; with ``wait_online`` also wait for its address."""
        mark = self.monitor.mark()
        t_reset = time.time()
        self.planned_restarts += 1
        self.hard_reset()
        return self.follow_boot(mark, t_reset, wait_online=wait_online, timeout=timeout)

    def reboot(self, wait_online: bool = True, timeout: float = BOOT_TIMEOUT_S) -> BootInfo:
        """Software reset through the console (`reboot`, esp_restart) and follow the new boot."""
        mark = self.monitor.mark()
        t_reset = time.time()
        self.planned_restarts += 1
        self.monitor.send("reboot")
        return self.follow_boot(mark, t_reset, wait_online=wait_online, timeout=timeout)

    def follow_boot(
        self, mark: int, t_reset: float, *, wait_online: bool = True, timeout: float = BOOT_TIMEOUT_S
    ) -> BootInfo:
        """Read a boot that starts at console line ``mark``: reset reason, HIL_HELLO, link, address."""
        console = self.monitor
        info = BootInfo(mark=mark, t_reset=t_reset)
        rst, match = console.wait_for_text(
            _RESET_LINE, since=mark, timeout=timeout, what="the ROM's reset line (rst:0x..)"
        )
        info.reset_code, info.reset_reason = int(match.group(1), 16), match.group(2)
        # Everything from the ROM banner on belongs to the new boot; a line the old firmware printed after
        # `mark` but before it was reset must not stand in for this boot's HELLO, link or address.
        mark = rst.index
        hello = console.wait_for_machine("HIL_HELLO", since=mark, timeout=timeout, what="HIL_HELLO after reset")
        info.hello = hello.fields
        self.hello = hello.fields
        if wait_online:
            link = console.wait_for(
                lambda ln: ln.machine is not None and ln.machine.fields.get("event") == "link_up",
                since=mark, timeout=timeout, what="HIL_EVENT link_up",
            )  # fmt: skip
            info.t_link = link.host_time
            got_ip = console.wait_for(
                lambda ln: ln.machine is not None and ln.machine.fields.get("event") == "got_ip",
                since=mark, timeout=IP_TIMEOUT_S, what="HIL_EVENT got_ip (DHCP lease)",
            )  # fmt: skip
            info.t_ip = got_ip.host_time
            assert got_ip.machine is not None
            info.ip = got_ip.machine.fields
        self.last_boot = info
        return info

    def command(self, line: str, timeout: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
        """Send a console command and return its HIL_RESULT fields (``ok`` may be false)."""
        word = line.split()[0]
        mark = self.monitor.mark()
        self.monitor.send(line)
        result = self.monitor.wait_for_machine(
            "HIL_RESULT",
            since=mark,
            timeout=timeout,
            where=lambda f: f.get("cmd") == word,
            what=f"the reply to `{line}`",
        )
        return result.fields

    def stats(self, timeout: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
        """Read the HIL_STATS counters now."""
        mark = self.monitor.mark()
        self.monitor.send("stats")
        line = self.monitor.wait_for_machine(
            "HIL_STATS", since=mark, timeout=timeout, where=lambda f: f.get("trigger") == "cmd", what="HIL_STATS reply"
        )
        return line.fields

    def ip_info(self) -> dict[str, Any]:
        """The DUT's current address, netmask, gateway and MAC (`ip` command)."""
        result = self.command("ip")
        if not result.get("ok"):
            raise BoardError(f"`ip` command failed: {result.get('error')}")
        return result

    def wait_for_ip(self, timeout: float = IP_TIMEOUT_S) -> str:
        """Wait until the DUT has an IPv4 address and return it."""
        deadline = time.monotonic() + timeout
        while True:
            mark = self.monitor.mark()
            info = self.ip_info()
            if info.get("ip") not in (None, "", "0.0.0.0"):
                return str(info["ip"])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DutTimeoutError(f"DUT has no IPv4 address after {timeout:g} s (no DHCP lease)")
            try:
                self.monitor.wait_for(
                    lambda ln: ln.machine is not None and ln.machine.fields.get("event") == "got_ip",
                    since=mark, timeout=remaining, what="HIL_EVENT got_ip",
                )  # fmt: skip
            except DutTimeoutError as exc:
                raise DutTimeoutError(f"DUT has no IPv4 address after {timeout:g} s (no DHCP lease)") from exc

    def throughput_floor_mbps(self, floor_mbps: float, host_cpu_steal_pct: float) -> float:
        """The floor one throughput attempt is held to, given the lab machine's CPU steal during it.

        A real board is not slowed by the lab machine's steal: the plain floor.
        """
        return floor_mbps

    def dut_processes(self) -> list[int]:
        """PIDs of the lab machine's processes that stand for the DUT (their CPU use is the DUT's).

        A real board runs on its own silicon: none.
        """
        return []

    def identity(self) -> dict[str, Any]:
        """Board kind, id and MAC, and the firmware it runs (from HIL_HELLO), for the results file."""
        mac = self.hello.get("mac", "")
        return {"kind": self.kind, "id": mac, "mac": mac, "port": self.port}

    def firmware_info(self) -> dict[str, Any]:
        """The firmware identity printed in HIL_HELLO."""
        keys = ("app", "app_version", "idf", "components", "chip", "chip_rev", "elf_sha256", "board")
        return {key: self.hello[key] for key in keys if key in self.hello}

    def firmware_build(self) -> BuildInfo:
        """The ESP-IDF build of the firmware this board runs.

        The default: unknown (a board whose firmware was not built with ESP-IDF on this machine).
        """
        return BuildInfo()

    def firmware_footprint(self) -> FirmwareFootprint | None:
        """The static footprint of the firmware this board runs, per archive; None when the board cannot know it.

        The default: unknown (a board built on the fly, or one whose build is not at hand).
        """
        return None
