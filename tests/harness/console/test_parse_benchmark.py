"""Opt-in benchmark (marker `benchmark`): parse >= 100 MB of synthetic console log, print MB/s and events/s."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "parse_bench.py"


@pytest.mark.benchmark
def test_parse_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("parse_bench", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = bench.build_log(100)
    assert len(data) >= 100 * (1 << 20)
    for log_events in (True, False):
        figures = bench.run(100, log_events, data)
        # Every unit of the log ends in one crash and a reboot: the parser must have seen them all.
        assert figures["kinds"]["reboot"] == figures["kinds"]["boot"] > 0
        with capsys.disabled():
            print(
                f"\nconsole parser (log_events={log_events}): "
                f"{figures['mb_per_s']:.1f} MB/s, {figures['events_per_s']:.0f} events/s"
            )
