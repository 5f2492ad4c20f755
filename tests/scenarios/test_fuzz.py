"""Fuzz campaign (opt-in: `--fuzz-minutes N`, `--fuzz-seed S`) and the replay of one of its cases
(`--fuzz-replay PCAP`, what `hil fuzz replay` runs). harness/fuzz.py runs them; docs/fuzz.md describes them.

Both judge crashes themselves, frame sequence by frame sequence, so they declare every crash kind expected:
the guard would otherwise fail the test with the first crash's summary instead of the case, its pcap and
its replay command. Fuzzed frames are dropped on purpose (bad checksums, unknown protocols, fragments that
never complete) and bursts at line rate may overflow the frame pool: the campaign records those counters as
metrics rather than holding them to a budget.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from harness.boards.board import Board
from harness.console.events import CRASH_EVENT_KINDS
from harness.fuzz import BoardDut, Campaign, FuzzBench, replay
from harness.fuzz_cli import replay_command

DROPS_ARE_EXPECTED = {"rx_drops": 2**62, "frame_pool_drops": 2**62, "tx_fails": 2**62}


def _say(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Print a line on the terminal now, past output capturing (the seed and each case as it is found)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")

    def say(line: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(line)

    return say


@pytest.mark.fuzz
@pytest.mark.expect_crash(*CRASH_EVENT_KINDS)
@pytest.mark.budget(**DROPS_ARE_EXPECTED)
def test_fuzz_campaign(board: Board, lab: Any, dut_ip: str, metrics: Any, hil_session: Any,
                       request: pytest.FixtureRequest) -> None:  # fmt: skip
    """Bursts of fuzzed frames over every layer for --fuzz-minutes; the DUT stays alive after each one."""
    options = request.config.option
    assert options.fuzz_minutes > 0, f"--fuzz-minutes must be positive, not {options.fuzz_minutes}"
    seed = options.fuzz_seed if options.fuzz_seed is not None else secrets.randbits(32)
    say = _say(request)
    say(f"\nfuzz: seed {seed}, {options.fuzz_minutes:g} min (the same campaign again: --fuzz-seed {seed})")
    request.node.user_properties.append(("fuzz_seed", seed))
    embedded = request.config.pluginmanager.has_plugin("pytest_embedded")
    bench = FuzzBench(BoardDut(board), lab.host, lab.host_if, lab.addressing.host_ip)
    campaign = Campaign(bench, hil_session.record.artifacts_dir / "fuzz", seed, log=say,
                        replay_command=lambda pcap: replay_command(options, embedded, pcap))  # fmt: skip
    try:
        report = campaign.run(options.fuzz_minutes * 60)
    finally:
        bench.close()
    say(report.summary())
    counters = report.counters
    metrics.record("fuzz_frames_sent", report.frames, "frames", "higher")
    metrics.record("fuzz_bursts", report.bursts, "bursts", "higher")
    metrics.record("fuzz_frames_per_s", report.frames / max(report.seconds, 1e-9), "frames/s", "higher")
    metrics.record("fuzz_cases", report.cases_found, "cases", "lower")
    metrics.record("fuzz_dut_resets", report.restarts, "resets", "lower")
    metrics.record("fuzz_rx_frames", counters.get("rx_frames", 0), "frames", "higher")
    for name in ("rx_drops", "frame_pool_drops", "tx_fails"):
        metrics.record(f"fuzz_{name}", counters.get(name, 0), "frames", "lower")
    for case in report.cases:
        request.node.user_properties.append((f"fuzz_case_{case.number}", case.describe()))
    message = report.failure_message()
    assert not message, message


@pytest.mark.fuzz_replay
@pytest.mark.expect_crash(*CRASH_EVENT_KINDS)
@pytest.mark.budget(**DROPS_ARE_EXPECTED)
def test_fuzz_replay(board: Board, lab: Any, dut_ip: str, metrics: Any, request: pytest.FixtureRequest) -> None:
    """Send the frames of --fuzz-replay PCAP; the DUT stays alive."""
    pcap = request.config.option.fuzz_replay
    bench = FuzzBench(BoardDut(board), lab.host, lab.host_if, lab.addressing.host_ip)
    try:
        result = replay(bench, pcap)
    finally:
        bench.close()
    metrics.record("fuzz_replay_frames", result.frames, "frames", "higher")
    mapped = ", mapped onto this DUT's addresses" if result.retargeted else ""
    if result.failure is not None:
        what = "crashed" if result.failure.kind == "crash" else "stopped answering"
        pytest.fail(f"replaying {pcap} ({result.frames} frame(s){mapped}): the DUT {what}: {result.failure.detail}",
                    pytrace=False)  # fmt: skip
