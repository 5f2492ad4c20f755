"""The `hil` command: every concern registers its own subcommands here."""

from __future__ import annotations

import argparse
import importlib
import sys

from harness import __version__
from harness.errors import HilError

# Each module provides ``register(subparsers)``; the subparser sets ``func(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = (
    "harness.run_command",
    "harness.results.cli",
    "harness.firmware.cli",
    "harness.console.cli",
    "harness.doctor_cli",
    "harness.boards.virtual.cli",
    "harness.selftest_cli",
    "harness.fuzz_cli",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="hil", description="esp-smoltcp HIL harness")
    parser.add_argument("--version", action="version", version=f"esp-smoltcp-hil {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hil` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.func(args) or 0)
    except HilError as exc:
        print(f"hil: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hil: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
