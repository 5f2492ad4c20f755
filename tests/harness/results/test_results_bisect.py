"""`hil bisect` and the step detection behind it (asv's l1 Potts model with an information criterion)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from results_files import write_results

from harness.cli import main
from harness.results.steps import _segment_costs, detect_steps, potts_fit
from harness.results.synthetic import RTT, THROUGHPUT, synthetic_history


def _series(n: int, step_at: int, step_pct: float, cv_pct: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(93.8 * (1 + (step_pct / 100 if i >= step_at else 0)), 93.8 * cv_pct / 100) for i in range(n)]


def test_segment_costs_are_l1_distances_from_the_median() -> None:
    values = [1.0, 5.0, 2.0, 8.0, 3.0]
    costs = _segment_costs(values)
    assert costs[0][4] == sum(abs(v - 3.0) for v in values)
    assert costs[1][2] == sum(abs(v - 5.0) for v in values[1:4])
    assert [s.level for s in potts_fit([1, 1, 1, 9, 9, 9], gamma=1.0)] == [1, 9]


@pytest.mark.parametrize("seed", range(20))
def test_noise_has_no_step_and_a_three_percent_step_is_found_where_it_is(seed: int) -> None:
    assert len(detect_steps(_series(30, 99, 0.0, 0.5, seed))) == 1
    segments = detect_steps(_series(30, 17, -3.0, 0.5, seed))
    assert [s.start for s in segments] == [0, 17]


def test_bisect_names_the_run_and_commit_where_throughput_stepped(tmp_path: Path, capsys) -> None:
    docs = synthetic_history([THROUGHPUT, RTT], 30, seed=3)
    for doc in docs[17:]:
        doc["tests"][0]["metrics"][0]["value"] *= 0.97
    docs[22]["interrupted"] = True  # never part of a series
    docs[22]["tests"][0]["metrics"][0]["value"] = 10.0
    db = str(tmp_path / "hil.sqlite")
    assert main(["results", "import", "--db", db, *map(str, write_results(tmp_path / "r", docs))]) == 0
    capsys.readouterr()
    assert main(["bisect", "--db", db, "run-0003", "run-0029"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "bisect: 2 metric series over 26 runs searched, 1 stepped"
    assert out[1].startswith("iperf3_tcp_mbps (tests/scenarios/test_throughput.py::test_tcp_rx): first stepped at")
    commit = docs[17]["source"]["commit"]
    assert f"run run-0017, commit {commit[:12]} https://" in out[1] and "worse" in out[1] and "14 runs before" in out[1]
    assert main(["bisect", "--db", db, "run-0018", "run-0029", "--metric", "iperf3_tcp_mbps"]) == 0
    assert "1 metric series over 11 runs searched, 0 stepped" in capsys.readouterr().out
