"""The `hil` results commands end to end: import files into a fresh store, gate, compare, report, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from results_files import write_results

from harness.cli import main
from harness.results.synthetic import RTT, THROUGHPUT, synthetic_history


def _history(tmp_path: Path, db: str, runs: int = 12, **options) -> list[dict]:
    docs = synthetic_history([THROUGHPUT, RTT], runs, **options)
    paths = write_results(tmp_path / "results", docs)
    assert main(["results", "import", "--db", db, *map(str, paths)]) == 0
    return docs


def test_three_percent_throughput_drop_fails_the_gate(db_url: str, tmp_path: Path, capsys) -> None:
    _history(tmp_path, db_url, last_run_change_pct={"iperf3_tcp_mbps": -3.0})
    capsys.readouterr()
    assert main(["gate", "--db", db_url]) == 1
    out = capsys.readouterr().out
    assert "regressed" in out and "gate: FAIL" in out


@pytest.mark.parametrize("seed", range(5))
def test_pure_noise_passes_the_gate(tmp_path: Path, seed: int) -> None:
    db = str(tmp_path / "hil.sqlite")
    _history(tmp_path, db, seed=seed)
    assert main(["gate", "--db", db]) == 0


def test_rtt_increase_regresses_but_throughput_increase_does_not(tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "hil.sqlite")
    _history(tmp_path, db, last_run_change_pct={"iperf3_tcp_mbps": +5.0, "ping_rtt_p50_ms": +30.0})
    capsys.readouterr()
    assert main(["gate", "--db", db]) == 1
    out = capsys.readouterr().out
    assert "regressed: ping_rtt_p50_ms" in out and "iperf3_tcp_mbps" not in out  # only what regressed
    assert main(["gate", "--db", db, "--verbose"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any("iperf3_tcp_mbps" in line and "improved" in line for line in lines)

    db2 = str(tmp_path / "only_throughput.sqlite")
    _history(tmp_path / "b", db2, last_run_change_pct={"iperf3_tcp_mbps": +5.0})
    assert main(["gate", "--db", db2]) == 0


def test_gate_on_an_older_run_and_with_short_history(tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "hil.sqlite")
    _history(tmp_path, db, last_run_change_pct={"iperf3_tcp_mbps": -10.0})
    assert main(["gate", "--db", db, "--run", "run-0010"]) == 0  # the regression is in run-0011 only
    capsys.readouterr()
    assert main(["gate", "--db", db, "--run", "run-0002"]) == 0
    out = capsys.readouterr().out
    assert "history too short to judge every metric" in out and "NOT JUDGED" in out and "gate: pass" not in out


def test_thresholds_come_from_the_lab_config(tmp_path: Path) -> None:
    db = str(tmp_path / "hil.sqlite")
    _history(tmp_path, db, last_run_change_pct={"iperf3_tcp_mbps": -3.0})
    config = tmp_path / "hil.toml"
    config.write_text("[regress]\nwindow = 10\n\n[regress.thresholds.iperf3_tcp_mbps]\nmin_effect_pct = 5.0\n")
    assert main(["gate", "--db", db, "--hil-config", str(config)]) == 0
    config.write_text("[regress.thresholds.iperf3_tcp_mbps]\nmin_efect_pct = 5.0\n")
    assert main(["gate", "--db", db, "--hil-config", str(config)]) == 2
    assert main(["gate", "--db", db, "--hil-config", str(tmp_path / "missing.toml")]) == 2


def test_compare_prints_side_by_side_deltas(tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "hil.sqlite")
    docs = _history(tmp_path, db, last_run_change_pct={"iperf3_tcp_mbps": -10.0})
    capsys.readouterr()
    assert main(["compare", "--db", db, "run-0005", "run-0011"]) == 0
    out = capsys.readouterr().out
    a = docs[5]["tests"][0]["metrics"][0]["value"]
    b = docs[-1]["tests"][0]["metrics"][0]["value"]
    line = next(line for line in out.splitlines() if "iperf3_tcp_mbps" in line)
    assert f"{a:.4g}" in line and f"{b:.4g}" in line and f"{100 * (b - a) / a:+.2f} %" in line and "worse" in line
    rtt = next(line for line in out.splitlines() if "ping_rtt_p50_ms" in line)
    assert "within noise" in rtt  # a few percent of RTT jitter is inside its history's noise
    assert "B vs A: 1 worse, 0 better, 1 within noise" in out
    assert main(["compare", "--db", db, "run-0000", "nope"]) == 2


def test_list_report_export_accept_reject(db_url: str, tmp_path: Path, capsys) -> None:
    docs = _history(tmp_path, db_url, runs=6)
    docs[-1]["tests"][1]["events"] = [{"kind": "panic", "lineno": 3, "reason": "[bold]Illegal instruction"}]
    docs[-1]["tests"][1]["outcome"] = "failed"
    (path,) = write_results(tmp_path / "again", docs[-1:])
    assert main(["results", "import", "--db", db_url, str(path)]) == 0
    capsys.readouterr()
    assert main(["results", "list", "--db", db_url]) == 0
    assert "run-0005" in capsys.readouterr().out
    assert main(["report", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "[bold]Illegal instruction" in out and "failed" in out  # Rich markup in device text stays literal
    assert "metrics that changed" in out and "commit" in out and "main" in out
    out_file = tmp_path / "export.json"
    assert main(["results", "export", "--json", "--db", db_url, "--out", str(out_file)]) == 0
    assert json.loads(out_file.read_text()) == docs
    assert main(["results", "reject", "--db", db_url, "run-0005"]) == 0
    capsys.readouterr()
    assert main(["results", "list", "--db", db_url]) == 0
    assert "rejected" in capsys.readouterr().out


def test_import_reports_each_bad_file_and_keeps_the_good_ones(tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "hil.sqlite")
    good = write_results(tmp_path, synthetic_history([THROUGHPUT], 1))
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert main(["results", "import", "--db", db, str(bad), *map(str, good)]) == 2
    assert "expected a JSON object, got a list" in capsys.readouterr().err
    assert main(["results", "list", "--db", db]) == 0
    assert "run-0000" in capsys.readouterr().out


def test_import_accepts_a_results_directory(tmp_path: Path) -> None:
    from harness.results.cli import results_files

    (tmp_path / "run1.json").write_text('{"run_id": "run1", "tests": []}')
    (tmp_path / "selftest-matrix.json").write_text('{"faults": []}')
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".run2.abc.json").write_text('{"run_id": "ru')  # a run's temp file: not ours to report
    (tmp_path / "run3.json").write_text('{"run_id": "ru')  # cut short: kept, so its error is reported
    assert results_files([str(tmp_path)]) == [str(tmp_path / "run1.json"), str(tmp_path / "run3.json")]
