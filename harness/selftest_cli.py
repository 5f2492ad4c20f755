"""`hil selftest`: run the suite against the healthy virtual board and each catalogued fault (harness/selftest.py)."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from harness.boards.virtual.kind import DEFAULT_STACK
from harness.errors import ConfigError
from harness.selftest import (
    RUN_TIMEOUT_S,
    SMALL_DL_BYTES,
    SMALL_IPERF_SECONDS,
    SelftestOptions,
    other_stack_faults,
    parse_fault_list,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil selftest` to the `hil` command."""
    parser = subparsers.add_parser(
        "selftest",
        help="prove the suite: healthy virtual board passes, every catalogued fault is caught (docs/faults.md)",
        description="Run tests/scenarios on the healthy virtual board (all must pass), then once per fault "
        "(its named scenarios must fail with a message naming it, the rest must pass). Prints the fault x "
        "scenario matrix, stores it as JSON with the runs' results, exits 1 on a missed detection or false alarm.",
    )
    parser.add_argument("--full", action="store_true", help="every fault of the catalogue (default: the short set)")
    parser.add_argument("--faults", help="comma-separated fault names to run instead")
    parser.add_argument(
        "--results-dir", type=Path, default=None,
        help="where runs, results files, store and matrix go (default: results/selftest-<time>)",
    )  # fmt: skip
    parser.add_argument(
        "--all-scenarios", action="store_true",
        help="run every scenario for every fault (default: the fault's own groups plus boot and ping)",
    )  # fmt: skip
    parser.add_argument("--dl-bytes", type=int, default=SMALL_DL_BYTES, help="bytes per HTTP transfer in each run")
    parser.add_argument("--iperf-seconds", type=int, default=SMALL_IPERF_SECONDS, help="iperf3 seconds in each run")
    parser.add_argument("--run-timeout", type=float, default=RUN_TIMEOUT_S, help="limit per pytest run in seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the selftest; 0 when every fault was detected and nothing raised a false alarm."""
    from harness.selftest import run_selftest

    if args.dl_bytes <= 0 or args.iperf_seconds <= 0 or args.run_timeout <= 0:
        raise ConfigError("--dl-bytes, --iperf-seconds and --run-timeout must be positive")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if args.full and not args.faults and other_stack_faults(DEFAULT_STACK):
        print(f"selftest: the virtual board runs the {DEFAULT_STACK} stack; not run (faults of another stack): "
              f"{', '.join(other_stack_faults(DEFAULT_STACK))}")  # fmt: skip
    options = SelftestOptions(
        faults=parse_fault_list(args.faults, args.full, DEFAULT_STACK),
        results_dir=args.results_dir or Path("results") / f"selftest-{stamp}",
        dl_bytes=args.dl_bytes, iperf_seconds=args.iperf_seconds, all_scenarios=args.all_scenarios,
        full_healthy=args.full, run_timeout_s=args.run_timeout,
    )  # fmt: skip
    ok, _ = run_selftest(options)
    return 0 if ok else 1
