"""`hil build` and `hil firmware check`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.firmware import build, check, footprint


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil build` and `hil firmware check` to the `hil` command."""
    build_parser = subparsers.add_parser(
        "build",
        help="build firmware/hil_app for esp32p4 with ESP-IDF (only when sources changed)",
        description="Build firmware/hil_app with idf.py when ESP-IDF is installed (IDF_PATH set, idf.py on "
        "PATH) and a source is newer than the build; print the build directory for flashing.",
    )
    build_parser.add_argument(
        "--build-dir", type=Path, help="build directory (default: one per variant, firmware/hil_app/build-idf<x.y>-...)"
    )
    build_parser.add_argument(
        "--sdkconfig-defaults",
        help='";"-separated defaults files instead of the variant\'s, e.g. '
        '"sdkconfig.defaults;sdkconfig.defaults.lwip"',
    )
    build_parser.add_argument(
        "--chip-rev",
        help=f"the board's chip revision (default: the board's chip_rev in hil.toml, else {build.DEFAULT_CHIP_REV})",
    )
    build_parser.add_argument("--board-name", help="which [boards.<name>] table of hil.toml gives chip_rev")
    build_parser.add_argument("--hil-config", type=Path, default=None, help="lab config file (default: ./hil.toml)")
    build_parser.add_argument(
        "--stack", choices=build.STACKS, default="smoltcp", help="TCP/IP stack: esp-smoltcp (default) or plain lwIP"
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


def chip_rev_to_build(given: str | None, config_path: Path | None, board_name: str | None) -> str | None:
    """The chip revision to build for: ``--chip-rev``, else the board's `chip_rev` in hil.toml (None: neither)."""
    from harness.config import LabConfig

    return given or LabConfig.load(config_path).board_table(board_name).chip_rev


def run_build(args: argparse.Namespace) -> int:
    """Build (or reuse) the variant for the board and the installed ESP-IDF; print its build directory."""
    build.require_idf()
    version = build.idf_version(Path(os.environ["IDF_PATH"]))
    chip_rev = chip_rev_to_build(args.chip_rev, args.hil_config, args.board_name)
    if not chip_rev:
        chip_rev = build.DEFAULT_CHIP_REV
        print(
            f"hil build: no chip_rev for the board (hil.toml or --chip-rev): building for {chip_rev}", file=sys.stderr
        )
    explicit = [part for part in (args.sdkconfig_defaults or "").split(";") if part]
    defaults = explicit or build.variant_defaults(version, chip_rev, args.stack)
    build_dir = args.build_dir or build.variant_build_dir(build.APP_DIR, version, chip_rev, args.stack)
    print(f"hil build: ESP-IDF v{version[0]}.{version[1]}, chip {chip_rev}, {args.stack}: {';'.join(defaults)}",
          file=sys.stderr)  # fmt: skip
    built = build.build_app(build_dir=build_dir, sdkconfig_defaults=defaults, force=args.force)
    sizes = footprint.read_footprint(built)
    if sizes is not None:
        print(f"hil build: the stack's archives (bytes):\n{footprint.describe(sizes)}", file=sys.stderr)
    print(built)
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
