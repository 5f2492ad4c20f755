"""The virtual ESP32-P4 as a board kind: `--board virtual` (the default), its `--virtual-stack` and `--fault`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.boards.kinds import BoardKind, KindOptions

STACKS = ("smoltcp", "linux")
# The firmware stack the virtual board runs by default: the firmware's own, smoltcp. Faults of another stack
# are refused (faults.validate_faults).
DEFAULT_STACK = "smoltcp"


class VirtualKind(BoardKind):
    """The virtual ESP32-P4 in its own namespace, cabled to the run's host namespace by a shaped veth."""

    name = "virtual"
    summary = "the virtual ESP32-P4 (the default; needs root for its network namespaces)"
    is_default = True

    def add_options(self, group: KindOptions) -> None:
        """`--virtual-stack smoltcp|linux` and `--fault NAME` (repeatable, from the fault catalogue)."""
        group.addoption(
            "--virtual-stack",
            choices=STACKS,
            default=DEFAULT_STACK,
            help="the virtual board's network stack: smoltcp (the default: the firmware's stack, in "
            "the native firmware) or linux (the kernel's stack, the control arm; docs/smoltcp.md)",
        )
        group.addoption("--fault", action="append", default=[],
                        help="start the virtual board with this fault from the catalogue (repeatable; "
                        "docs/faults.md)")  # fmt: skip

    def check_options(self, options: Any, config: Any) -> None:
        """Every `--fault` is in the catalogue (the error lists the catalogue) and exists in the board's stack."""
        from harness.boards.virtual.faults import validate_faults

        options.fault = validate_faults(options.fault, stack=getattr(options, "virtual_stack", DEFAULT_STACK))

    def make_lab(self, options: Any, config: Any, run_id: str, log_dir: Path) -> Any:
        """Two namespaces joined by a veth shaped like the configured link."""
        from harness.lab.base import LinkProfile
        from harness.lab.veth import VethLab

        return VethLab(run_id, link=LinkProfile(rate_mbit=config.link.rate_mbit, mtu=config.link.mtu), log_dir=log_dir)

    def make_board(self, options: Any, config: Any, lab: Any, log_dir: Path) -> Any:
        """The board process in the lab's DUT namespace, started with the chosen faults."""
        from harness.boards.virtual.board import VirtualBoard

        return VirtualBoard(lab, log_dir, faults=tuple(options.fault), stack=options.virtual_stack)


BOARD_KIND = VirtualKind()
