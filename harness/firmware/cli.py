"""`hil build` and `hil firmware check`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.firmware import build, check


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil build` and `hil firmware check` to the `hil` command."""
    build_parser = subparsers.add_parser(
        "build",
        help="build firmware/hil_app for esp32p4 with ESP-IDF (only when sources changed)",
        description="Build firmware/hil_app with idf.py when ESP-IDF is installed (IDF_PATH set, idf.py on "
        "PATH) and a source is newer than the build; print the build directory for flashing.",
    )
    build_parser.add_argument("--build-dir", type=Path, help="build directory (default: firmware/hil_app/build)")
    build_parser.add_argument(
        "--sdkconfig-defaults",
        help='";"-separated defaults files, e.g. "sdkconfig.defaults;sdkconfig.defaults.rev_lt_v3"',
    )
    build_parser.add_argument("--force", action="store_true", help="build even when nothing changed")
    build_parser.set_defaults(func=run_build)

    firmware_parser = subparsers.add_parser("firmware", help="test-firmware tools (check)")
    actions = firmware_parser.add_subparsers(dest="firmware_action", metavar="ACTION", required=True)
    check_parser = actions.add_parser(
        "check",
        help="check hil_app's CMake, manifest and sdkconfig against PROTOCOL.md (no ESP-IDF needed)",
    )
    check_parser.add_argument("--repo", type=Path, default=check.REPO, help="repository root (default: this one)")
    check_parser.set_defaults(func=run_check)


def run_build(args: argparse.Namespace) -> int:
    """Build (or reuse) the app and print its build directory."""
    defaults = [part for part in (args.sdkconfig_defaults or "").split(";") if part] or None
    build_dir = build.build_app(build_dir=args.build_dir, sdkconfig_defaults=defaults, force=args.force)
    print(build_dir)
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Print every finding; exit 1 when there is any."""
    findings = check.check_app(args.repo.resolve())
    for finding in findings:
        print(finding)
    if findings:
        print(f"hil firmware check: {len(findings)} problem(s)", file=sys.stderr)
        return 1
    print("hil firmware check: firmware/hil_app is consistent with PROTOCOL.md")
    return 0
