"""The twin's basic console commands: help, version, ip, stats, reboot, crash (firmware/PROTOCOL.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.boards.virtual import bootlog
from harness.boards.virtual.crashes import CRASH_KINDS
from harness.boards.virtual.registry import COMMANDS, command

if TYPE_CHECKING:
    from harness.boards.virtual.firmware import Firmware

PROTOCOL_CRASH_KINDS = ("panic", "abort", "wdt", "stack_overflow", "rust_panic")


@command("help", "list commands")
def help_command(fw: Firmware, args: list[str]) -> None:
    for name in sorted(COMMANDS):
        fw.console.line(f"  {name} - {COMMANDS[name].help}")
    fw.result("help", commands=sorted(COMMANDS))


@command("version", "print HIL_HELLO again")
def version(fw: Firmware, args: list[str]) -> None:
    fw.console.machine("HIL_HELLO", fw.hello())
    fw.result("version")


@command("ip", "address, netmask, gateway and MAC of the Ethernet interface")
def ip(fw: Firmware, args: list[str]) -> None:
    lease = fw.lease
    fw.result(
        "ip", iface="eth", ip=lease.get("ip", "0.0.0.0"), netmask=lease.get("netmask", "0.0.0.0"),
        gw=lease.get("gw") or "0.0.0.0", mac=fw.mac, ipv6_ll=fw.ipv6_link_local(),
    )  # fmt: skip


@command("stats", "print HIL_STATS now; 'stats period <s>' prints them every s seconds (0 stops)")
def stats(fw: Firmware, args: list[str]) -> None:
    if not args:
        fw.print_stats("cmd")
        fw.result("stats")
        return
    if len(args) == 2 and args[0] == "period":
        try:
            period = float(args[1])
        except ValueError:
            period = -1
        if period >= 0:
            fw.set_stats_period(period)
            fw.result("stats", period_s=period)
            return
    fw.result("stats", ok=False, error="usage: stats | stats period <seconds>")


@command("reboot", "software reset (esp_restart)")
def reboot(fw: Firmware, args: list[str]) -> int:
    fw.result("reboot")
    fw.console.line("Rebooting...")
    return fw.reset_exit_code(bootlog.SW_CPU_RESET)


@command("crash", "crash on purpose: panic|abort|wdt|stack_overflow|rust_panic")
def crash(fw: Firmware, args: list[str]) -> int | None:
    if len(args) != 1 or args[0] not in CRASH_KINDS:
        fw.result("crash", ok=False, error=f"usage: crash {'|'.join(PROTOCOL_CRASH_KINDS)}")
        return None
    kind = args[0]
    fw.result("crash", kind=kind)
    fw.crash(kind, task="hil_console")
