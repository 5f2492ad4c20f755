"""`hil doctor`: check this machine for the virtual board and a real ESP32-P4, and say what to fix."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.doctor import FAIL, WARN, DoctorInputs, exit_code, run_checks


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil doctor` to the `hil` command."""
    parser = subparsers.add_parser(
        "doctor",
        help="check tools, permissions, serial port, NIC, ESP-IDF and crash decoding; print what to fix",
        description="One line per check: status, what, what was found, and the fix. Exit status 0 when "
        "everything the virtual board needs is present (missing real-board pieces and partial crash decoding are "
        "warnings), 1 otherwise.",
    )
    parser.add_argument("--hil-config", type=Path, default=None, help="lab config file (default: ./hil.toml)")
    parser.add_argument("--board-name", default=None, help="which [boards.<name>] table to check")
    parser.add_argument("--port", default=None, help="serial port to check instead of the configured/detected one")
    parser.add_argument("--eth-iface", default=None, help="NIC to check instead of the configured one")
    parser.set_defaults(func=doctor)


def doctor(args: argparse.Namespace) -> int:
    """Run every check and print the report."""
    checks = run_checks(
        DoctorInputs(config_path=args.hil_config, board_name=args.board_name, port=args.port, eth_iface=args.eth_iface)
    )
    for check in checks:
        print(check.line())
    failures = sum(check.status == FAIL for check in checks)
    warnings = sum(check.status == WARN for check in checks)
    verdict = "ready for the virtual board" if not failures else "NOT ready for the virtual board"
    print(f"\n{verdict}: {failures} failure(s), {warnings} warning(s) (warnings: real-board pieces, crash decoding)")
    return exit_code(checks)
