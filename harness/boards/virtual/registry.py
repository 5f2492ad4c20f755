"""How features of the firmware twin plug in: console commands and services started at boot.

A feature module (listed in `firmware.FEATURE_MODULES`) registers its commands with `@command` and its
boot-time services with `@service`; handlers receive the running `Firmware` and the command's words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.boards.virtual.firmware import Firmware

# A handler returns None, or an exit code when the command resets the chip (reboot, crash).
Handler = Callable[["Firmware", list[str]], "int | None"]


@dataclass(frozen=True)
class Command:
    """One console command."""

    name: str
    handler: Handler
    help: str


COMMANDS: dict[str, Command] = {}
SERVICES: list[Callable[[Firmware], Any]] = []
# Catalogue faults (harness/boards/virtual/faults.py) some feature implements; the twin warns about others.
FAULT_MECHANISMS: set[str] = set()


def command(name: str, help: str) -> Callable[[Handler], Handler]:
    """Register ``fn(firmware, args)`` as the console command ``name``."""

    def register(fn: Handler) -> Handler:
        if name in COMMANDS:
            raise ValueError(f"console command {name!r} registered twice")
        COMMANDS[name] = Command(name, fn, help)
        return fn

    return register


def service(fn: Callable[[Firmware], Any]) -> Callable[[Firmware], Any]:
    """Register ``fn(firmware)`` to run at boot, after the network interface is attached."""
    SERVICES.append(fn)
    return fn


def fault_mechanism(*names: str) -> None:
    """Declare that the calling feature module implements these catalogue faults (checked with fw.has_fault)."""
    FAULT_MECHANISMS.update(names)
