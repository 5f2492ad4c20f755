"""`hil run`: the HIL suite (tests/scenarios) with the harness's defaults."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent.parent / "tests" / "scenarios"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil run` and `hil test` to the `hil` command."""
    parser = subparsers.add_parser(
        "run",
        help="run the HIL suite (tests/scenarios); extra arguments go to pytest",
        description="Run the HIL scenarios against a board (default: the virtual ESP32-P4). "
        "Arguments not listed here are passed to pytest, e.g. `hil run -k ping --board esp32p4`.",
    )
    parser.set_defaults(func=run, accepts_extra=True)
    register_test(subparsers)


def run(args: argparse.Namespace) -> int:
    """Replace this process by pytest on the scenario suite.

    exec (rather than a child process) lets Ctrl-C and SIGTERM reach pytest alone, so its teardown
    runs to the end instead of being cut short by a parent that dies first.
    """
    command = [sys.executable, "-m", "pytest", str(SCENARIOS), *args.extra]
    os.execv(sys.executable, command)
    return 0  # pragma: no cover - execv does not return


def register_test(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil test` to the `hil` command."""
    parser = subparsers.add_parser(
        "test",
        help="run the project's tests (harness self-tests and the suite on the virtual board)",
        description="Run everything under tests/ (tests/harness and tests/scenarios). Extra arguments go to pytest.",
    )
    parser.set_defaults(func=run_tests, accepts_extra=True)


def run_tests(args: argparse.Namespace) -> int:
    """Replace this process by pytest on tests/."""
    tests = SCENARIOS.parent
    os.execv(sys.executable, [sys.executable, "-m", "pytest", str(tests), *args.extra])
    return 0  # pragma: no cover - execv does not return
