"""`hil fuzz replay PCAP`: send a fuzz case's frames to the board again and check it survives.

It is `hil run` of the replay scenario (`tests/scenarios/test_fuzz.py::test_fuzz_replay`) with `--fuzz-replay
PCAP`, so the lab, the board and every option of `hil run` work as in the run that found the case; further
arguments go to pytest (`hil fuzz replay case-001.min.pcap --board esp32p4 --port /dev/ttyACM0`).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from harness import run_command
from harness.errors import ConfigError
from harness.paths import scenarios_dir

REPLAY_TEST = "test_fuzz.py::test_fuzz_replay"
# Options of the run a replay needs besides those of its board kind: which board, and the lab config.
RUN_OPTIONS = ("board", "hil_config", "dhcp_force")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil fuzz replay` to the `hil` command."""
    parser = subparsers.add_parser("fuzz", help="replay a case of the fuzz campaign (`hil run --fuzz-minutes N`)")
    commands = parser.add_subparsers(dest="fuzz_command", metavar="COMMAND", required=True)
    replay = commands.add_parser(
        "replay",
        help="send a fuzz case's pcap to the board and check it is still alive",
        description="Run the replay scenario with --fuzz-replay PCAP (a `hil run`: further arguments go to pytest, "
        "e.g. --board esp32p4 --port /dev/ttyACM0). Frames are mapped onto this run's addresses when the pcap's "
        "case file (case-NNN.json beside it) names other ones.",
    )
    replay.add_argument("pcap", type=Path, help="the pcap of a case (results/<run>/fuzz/case-NNN*.pcap)")
    replay.set_defaults(func=replay_case, accepts_extra=True)


def replay_case(args: argparse.Namespace) -> int:
    """Replace this process by `hil run` of the replay scenario."""
    if not args.pcap.is_file():
        raise ConfigError(f"no pcap at {args.pcap}")
    args.extra = ["--fuzz-replay", str(args.pcap), str(scenarios_dir() / REPLAY_TEST), *args.extra]
    return run_command.run(args)


def replay_command(options: Any, embedded_plugin: bool, pcap: Path) -> str:
    """The `hil fuzz replay` command line for ``pcap`` on the board of this run (with its non-default options)."""
    from harness.plugin import harness_options

    words = ["hil", "fuzz", "replay", str(pcap)]
    for dest, option in harness_options(embedded_plugin).items():
        if option.owner is None and dest not in RUN_OPTIONS:
            continue
        value = getattr(options, dest, option.default)
        if value == option.default or value in (None, False, []):
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            words += [option.flag] if item is True else [option.flag, str(item)]
    return shlex.join(words)
