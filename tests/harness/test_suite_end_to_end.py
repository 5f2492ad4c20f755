"""`hil run` end to end on the virtual board: results, JUnit, concurrency, Ctrl-C, a hung DUT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.lab.netns import Namespace
from harness.lab.veth import VethLab
from harness.testing import REPO, hil_command, hil_namespaces, needs_root, processes_mentioning, wait_for

pytestmark = needs_root


def _results(results_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(results_dir.glob("*.json"))]


def _run_scenario_file(source: str, tmp_path: Path) -> tuple[dict[str, dict], str, float]:
    """Run a scenario file in its own pytest; return its tests by name, a failure context and the wall time.

    The context lists every test's outcome, message and events with the tail of the nested run's output,
    so a failed expectation explains itself from CI's log alone.
    """
    scenario = tmp_path / "test_nested.py"
    scenario.write_text(textwrap.dedent(source))
    results_dir = tmp_path / "results"
    command = [sys.executable, "-m", "pytest", str(scenario), "--results-dir", str(results_dir),
               "-p", "no:cacheprovider", "--rootdir", str(tmp_path)]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    output = f"--- nested pytest output (tail) ---\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
    records = _results(results_dir)
    assert len(records) == 1, f"expected one results file, got {len(records)}\n{output}"
    tests = {test["nodeid"].split("::")[-1]: test for test in records[0]["tests"]}
    seen = "\n".join(
        f"{name}: {test['outcome']} {test.get('message', '')[:400]!r} events={[e['kind'] for e in test['events']]}"
        for name, test in tests.items()
    )
    return tests, f"{seen}\n{output}", elapsed


def test_two_concurrent_runs_pass_and_record_everything(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        results_dir = tmp_path / name
        junit = tmp_path / f"{name}.xml"
        command = hil_command("-k", "test_boot or test_ping", f"--junitxml={junit}", results_dir=results_dir)
        runs.append((results_dir, junit, subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                                                          stderr=subprocess.STDOUT, text=True)))  # fmt: skip
    for results_dir, junit, process in runs:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output[-3000:]
        assert "esp-smoltcp-hil summary" in output and "ping_rtt_p50_ms" in output

        (record,) = _results(results_dir)
        assert record["board"]["kind"] == "virtual" and record["board"]["mac"]
        assert record["firmware"]["chip"] == "esp32p4" and len(record["firmware"]["elf_sha256"]) == 64
        assert record["link"]["goodput_ceiling_mbps"] == pytest.approx(94.148, abs=0.001)
        assert record["finished"] and record["config"]["fingerprint"]
        assert record["stack"].startswith("smoltcp 0.12.") and record["firmware"]["stack"] == "smoltcp"
        outcomes = {test["nodeid"].split("::")[-1]: test["outcome"] for test in record["tests"]}
        assert outcomes == {"test_boot": "passed", "test_boot_memory_budget": "passed", "test_ping[56]": "passed",
                            "test_ping[512]": "passed", "test_ping[1458]": "passed",
                            "test_ping[1472]": "skipped"}  # fmt: skip
        for test in record["tests"]:
            assert (results_dir / test["console_slice"]).read_text().strip(), f"empty console slice {test['nodeid']}"
            assert "rx_frames" in test["counters"]
            if "test_boot" not in test["nodeid"]:  # the boot tests reboot: a new heap, no change to report
                assert {"heap_free", "heap_min_free"} <= set(test["counters"]), test["counters"]
            for metric in test["metrics"]:
                assert set(metric) >= {"name", "value", "unit", "better"} and metric["better"] in ("higher", "lower")

        properties = {p.get("name") for p in ET.parse(junit).getroot().iter("property")}
        assert {"ping_rtt_p50_ms", "boot_to_ip_s", "console_slice"} <= properties
        assert not processes_mentioning(str(results_dir)), "a process of the run outlived it"
    ids = [_results(results_dir)[0]["run_id"] for results_dir, _, _ in runs]
    assert ids[0] != ids[1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_transfer_cleans_up_and_records_the_test_as_interrupted(tmp_path: Path, sig: int) -> None:
    before = hil_namespaces()
    command = hil_command("-k", "http_download", "--dl-bytes", "2000000000", results_dir=tmp_path)
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        new = _wait_for_transfer(before, timeout=60)
        process.send_signal(sig)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert not new & hil_namespaces(), f"namespaces left after {sig!r}: {new & hil_namespaces()}\n{output[-2000:]}"
    assert not processes_mentioning(str(tmp_path)), f"a process of the run outlived {sig!r}"
    (record,) = _results(tmp_path)
    assert record["board"]["kind"] == "virtual"
    (test,) = [test for test in record["tests"] if "http_download" in test["nodeid"]]
    assert test["outcome"] == "interrupted", f"{test}\n{output[-2000:]}"
    assert record["interrupted"] is True and record["finished"]


def test_nothing_outlives_a_sigkilled_run_and_the_next_run_sweeps_its_namespaces(tmp_path: Path) -> None:
    before = hil_namespaces()
    command = hil_command("-k", "http_download", "--dl-bytes", "2000000000", results_dir=tmp_path)
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        new = _wait_for_transfer(before, timeout=60)
        process.kill()  # no teardown runs: the board, its firmware and services must die on their own
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    running = lambda: [pid for name in new & hil_namespaces() for pid in Namespace(name).pids()]  # noqa: E731
    assert wait_for(lambda: not running(), timeout_s=10), f"processes outlived a SIGKILLed run: {running()}"
    assert new <= hil_namespaces(), "nothing should have cleaned up after a SIGKILL"
    with VethLab():  # the next run's start proves the dead run dead and removes what it left
        assert not new & hil_namespaces(), f"the sweep left {new & hil_namespaces()}"


def _wait_for_transfer(before: set[str], timeout: float) -> set[str]:
    """Wait until the run's cable has carried 20 MB of the download (the transfer is under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in hil_namespaces() - before:
            if name.endswith("-host"):
                stats = subprocess.run(["ip", "netns", "exec", name, "cat", "/sys/class/net/lab0/statistics/rx_bytes"],
                                       capture_output=True, text=True, timeout=10)  # fmt: skip
                if stats.stdout.strip().isdigit() and int(stats.stdout) > 20_000_000:
                    return {name, name.removesuffix("-host") + "-dut"}
        time.sleep(0.2)  # polling an external counter; there is no event to wait on
    raise AssertionError("the download did not start within the timeout")


HUNG_DUT_SCENARIO = """
import threading

from harness.lab.traffic import http_download, ping


def test_dut_hangs_mid_download(board, lab, dut_ip):
    pid = board.app_pid()
    timer = threading.Timer(1.0, lambda: __import__("os").kill(pid, 9))
    timer.start()
    http_download(lab.host, dut_ip, 500_000_000)


def test_next_test_gets_a_working_board(board, lab, dut_ip):
    assert ping(lab.host, dut_ip, count=5, interval=0.05).loss_pct == 0
"""


def test_hung_dut_fails_one_test_and_the_run_goes_on(tmp_path: Path) -> None:
    tests, context, elapsed = _run_scenario_file(HUNG_DUT_SCENARIO, tmp_path)
    hung = tests["test_dut_hangs_mid_download"]
    assert hung["outcome"] == "failed", context
    assert "stalled" in hung["message"] or "DUT" in hung["message"], context
    assert tests["test_next_test_gets_a_working_board"]["outcome"] == "passed", context
    assert elapsed < 120, f"a hung DUT held the run for {elapsed:.0f} s"


CRASH_AND_BUDGET_SCENARIO = """
import pytest

from harness.lab.traffic import ping


def test_crash_mid_scenario(board, lab, dut_ip):
    assert ping(lab.host, dut_ip, count=5, interval=0.05).loss_pct == 0
    mark = board.monitor.mark()
    board.monitor.send("crash panic")
    board.follow_boot(mark, 0.0)


def test_after_the_crash(board, lab, dut_ip):
    assert ping(lab.host, dut_ip, count=5, interval=0.05).loss_pct == 0


@pytest.mark.expect_crash("wdt", "abort")
def test_declared_crash_passes(board):
    mark = board.monitor.mark()
    board.monitor.send("crash wdt")
    board.follow_boot(mark, 0.0)


def test_reboot_is_planned(board):
    board.reboot()


@pytest.mark.budget(rx_frames=0)
def test_budget(board, lab, dut_ip):
    ping(lab.host, dut_ip, count=5, interval=0.05)
"""


def test_crash_fails_exactly_its_scenario_and_budgets_apply(tmp_path: Path) -> None:
    tests, context, _ = _run_scenario_file(CRASH_AND_BUDGET_SCENARIO, tmp_path)
    crashed = tests["test_crash_mid_scenario"]
    assert crashed["outcome"] == "failed", context
    assert "DUT crashed" in crashed["message"] and "Load access fault" in crashed["message"], context
    assert [e["kind"] for e in crashed["events"]][:1] == ["panic"], context
    assert tests["test_after_the_crash"]["outcome"] == "passed", context
    assert tests["test_declared_crash_passes"]["outcome"] == "passed", context
    assert tests["test_reboot_is_planned"]["outcome"] == "passed", context
    budget = tests["test_budget"]
    assert budget["outcome"] == "failed" and "counter budget exceeded: rx_frames" in budget["message"], context
