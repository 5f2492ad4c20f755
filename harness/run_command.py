"""`hil run`: the HIL suite (tests/scenarios) with the harness's defaults."""

from __future__ import annotations

import argparse
import subprocess
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
    """Run pytest on the scenario suite and return its exit code."""
    command = [sys.executable, "-m", "pytest", str(SCENARIOS), "-p", "no:cacheprovider", *args.extra]
    return subprocess.call(command)
