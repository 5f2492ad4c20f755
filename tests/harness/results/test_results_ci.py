"""Issue 15 bars for CI: branch-keyed history, a PR gated against main, a short gate output, markdown with the
commit, GitLab metrics, github-action-benchmark and Bencher BMF exports."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from results_files import write_results

from harness.cli import main
from harness.results.synthetic import RTT, THROUGHPUT, synthetic_history

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _two_branches(tmp_path: Path, pr_change_pct: float, seed: int = 0) -> tuple[str, Path]:
    """Twelve runs on main, then a PR branch whose two runs come later; the PR's last run shifted."""
    main_docs = synthetic_history([THROUGHPUT, RTT], 12, seed=seed, start=START, run_prefix="main")
    pr_docs = synthetic_history(
        [THROUGHPUT, RTT],
        2,
        seed=seed + 100,
        start=START.replace(day=3),
        run_prefix="pr",
        branch="fix-select",
        base_branch="main",
        last_run_change_pct={"iperf3_tcp_mbps": pr_change_pct},
    )
    db = str(tmp_path / "hil.sqlite")
    paths = write_results(tmp_path / "results", main_docs + pr_docs)
    assert main(["results", "import", "--db", db, *map(str, paths[:-1])]) == 0  # the PR's last run: judged as a file
    return db, paths[-1]


def test_a_three_percent_drop_on_a_pr_fails_against_main(tmp_path: Path, capsys) -> None:
    db, pr_file = _two_branches(tmp_path, -3.0)
    capsys.readouterr()
    summary = tmp_path / "summary.md"
    assert main(["gate", "--db", db, str(pr_file), "--base", "main", "--markdown", str(summary)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) <= 5, out  # a few lines, not a table of every metric
    assert out[0].startswith("gate: run pr-0001") and "branch fix-select, against branch main" in out[0]
    assert "2 of 2 metric(s) judged: 1 regressed" in out[1]
    assert out[2].startswith("regressed: iperf3_tcp_mbps") and "of 10 runs" in out[2] and " -2.9" in out[2]
    assert out[-1] == "gate: FAIL (1 metric(s) regressed)"
    commit = json.loads(pr_file.read_text())["source"]["commit"]
    markdown = summary.read_text()
    assert "hil gate: 1 metric(s) regressed" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| iperf3\\_tcp\\_mbps"))
    assert f"[{commit[:12]}](https://github.com/example/esp-smoltcp-hil/commit/{commit})" in row
    # Against its own branch the PR has one earlier run: the gate says it cannot judge, and does not pass.
    assert main(["gate", "--db", db, str(pr_file)]) == 0
    out = capsys.readouterr().out
    assert "history too short to judge every metric" in out and "branch 'fix-select'" in out and "NOT JUDGED" in out


@pytest.mark.parametrize("seed", range(4))
def test_noise_on_a_pr_passes_against_main(tmp_path: Path, seed: int, capsys) -> None:
    db, pr_file = _two_branches(tmp_path, 0.0, seed)
    assert main(["gate", "--db", db, str(pr_file), "--base", "main"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "gate: pass"


def test_pr_runs_are_not_baselines_of_main(tmp_path: Path, capsys) -> None:
    db, pr_file = _two_branches(tmp_path, -3.0)
    assert main(["results", "import", "--db", db, str(pr_file)]) == 0
    later_main = synthetic_history([THROUGHPUT, RTT], 13, start=START, run_prefix="main")[-1]
    later_main["started"] = START.replace(day=9).isoformat()
    (path,) = write_results(tmp_path / "later", [later_main])
    assert main(["results", "import", "--db", db, str(path)]) == 0
    capsys.readouterr()
    assert main(["gate", "--db", db, "--run", "main-0012"]) == 0  # judged against main only
    assert "2 of 2 metric(s) judged: 0 regressed" in capsys.readouterr().out


def test_step_summary_is_appended_when_github_sets_it(tmp_path: Path, monkeypatch, capsys) -> None:
    db, pr_file = _two_branches(tmp_path, -3.0)
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert main(["gate", "--db", db, str(pr_file), "--base", "main"]) == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n") and ":x: hil gate" in text


def test_ci_exports(tmp_path: Path, capsys) -> None:
    db, pr_file = _two_branches(tmp_path, 0.0)
    assert main(["results", "import", "--db", db, str(pr_file)]) == 0
    capsys.readouterr()
    assert main(["results", "export", "--db", db, "--format", "gitlab-metrics", "--run", "pr-0001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "# EOF" and lines[0].startswith('iperf3_tcp_mbps{test="tests/scenarios/test_throughput.py')
    assert float(lines[0].rsplit(" ", 1)[1]) > 90
    assert main(["results", "export", "--db", db, "--format", "github-benchmark", "--better", "higher"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["unit"] == "Mbit/s" and entry["name"].endswith("iperf3_tcp_mbps") and entry["value"] > 90
    assert main(["results", "export", "--db", db, "--format", "github-benchmark"]) == 2
    capsys.readouterr()
    out = tmp_path / "bmf.json"
    assert main(["results", "export", "--db", db, "--format", "bmf", "--out", str(out)]) == 0
    bmf = json.loads(out.read_text())
    assert bmf[RTT.nodeid]["ping-rtt-p50-ms"]["value"] < 1
