"""`hil run`: the HIL suite (tests/scenarios) with the harness's defaults."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent.parent / "tests" / "scenarios"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil run` to the `hil` command."""
    parser = subparsers.add_parser(
        "run",
        help="run the HIL suite (tests/scenarios); extra arguments go to pytest",
        description="Run the HIL scenarios against a board (default: the virtual ESP32-P4). "
        "Arguments not listed here are passed to pytest, e.g. `hil run -k ping --board esp32p4`.",
    )
    parser.set_defaults(func=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    """Replace this process by pytest on the scenario suite.

    exec (rather than a child process) lets Ctrl-C and SIGTERM reach pytest alone, so its teardown
    runs to the end instead of being cut short by a parent that dies first.
    """
    command = [sys.executable, "-m", "pytest", str(SCENARIOS), *args.extra]
    os.execv(sys.executable, command)
    return 0  # pragma: no cover - execv does not return
