"""A pytest-embedded-style test file the project has never seen, run as a user runs it, on the virtual board.

It is written into a fresh directory and run from there with `hil run FILE`, and with plain `pytest --board
virtual FILE` where pytest-embedded's plugin is loaded too: the harness's `dut` serves it either way, and the
test gets the guard (a panic fails it), its slice, counters and metrics, and its record in the results.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.testing import needs_root

pytestmark = needs_root

IDF_STYLE = """
import time

import pexpect
import pytest
from pytest_embedded import Dut


@pytest.mark.esp32p4
@pytest.mark.generic
def test_hello_console(dut: Dut, metrics) -> None:
    dut.expect(r"rst:0x[0-9a-f]+ \\((\\w+)\\)")
    dut.expect_exact("2nd stage bootloader")
    assert dut.expect(r"Project name:\\s+(\\w+)").group(1) == b"hil_app"
    dut.expect_exact("hil> ", timeout=10)
    started = time.monotonic()
    dut.write("version")
    assert dut.expect_exact(b'"cmd":"version"', timeout=5) == b'"cmd":"version"'
    metrics.record("dut_version_reply_ms", (time.monotonic() - started) * 1000, "ms", "lower")
    with pytest.raises(pexpect.TIMEOUT):
        dut.expect_exact("never printed", timeout=0.5)


def test_a_panic_fails_the_test(dut: Dut) -> None:
    dut.expect_exact("hil> ", timeout=10)
    dut.write("crash panic")
    dut.expect_exact("Guru Meditation Error", timeout=10)
    dut.expect(r"rst:0x[0-9a-f]+ \\(\\w+\\)", timeout=20)


def test_after_the_panic(dut: Dut) -> None:
    dut.expect_exact("hil> ", timeout=10)
    dut.serial.hard_reset()
    dut.expect(r"rst:0x[0-9a-f]+", timeout=20)
    dut.expect_exact("hil> ", timeout=10)


@pytest.mark.parametrize("target", ["esp32c6", "esp32p4"], indirect=True)
def test_gets_an_address(dut: Dut, target: str) -> None:
    address = dut.expect(r'"event":"got_ip","iface":"eth","ip":"(\\d+\\.\\d+\\.\\d+\\.\\d+)"', timeout=30).group(1)
    assert address.count(b".") == 3 and dut.target == target
"""


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "harness.cli", "run"],  # `hil run FILE`: pytest-embedded's plugin left out
        [sys.executable, "-m", "pytest", "--board", "virtual"],  # plain pytest, pytest-embedded's plugin loaded
    ],
    ids=["hil-run", "pytest-with-pytest-embedded"],
)
def test_an_unseen_pytest_embedded_file_runs_with_everything_the_harness_adds(tmp_path: Path, command: list) -> None:
    (tmp_path / "test_idf_style.py").write_text(IDF_STYLE)
    argv = [*command, "-p", "no:cacheprovider", "--results-dir", "out", "test_idf_style.py"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    context = f"--- output (tail) ---\n{done.stdout[-5000:]}{done.stderr[-2000:]}"
    assert done.returncode == 1, context  # exactly one test fails: the panic
    (results,) = (tmp_path / "out").glob("*.json")
    tests = {test["nodeid"]: test for test in json.loads(results.read_text())["tests"]}
    outcomes = {nodeid: test["outcome"] for nodeid, test in tests.items()}
    assert outcomes == {
        "test_idf_style.py::test_hello_console": "passed",
        "test_idf_style.py::test_a_panic_fails_the_test": "failed",
        "test_idf_style.py::test_after_the_panic": "passed",
        "test_idf_style.py::test_gets_an_address[esp32c6]": "skipped",
        "test_idf_style.py::test_gets_an_address[esp32p4]": "passed",
    }, context

    hello = tests["test_idf_style.py::test_hello_console"]
    assert [metric["name"] for metric in hello["metrics"]] == ["dut_version_reply_ms"], context
    assert "rx_frames" in hello["counters"], context
    console_slice = (tmp_path / "out" / hello["console_slice"]).read_text()
    assert '"cmd":"version"' in console_slice, "the slice holds the test's console exchange"

    panic = tests["test_idf_style.py::test_a_panic_fails_the_test"]
    assert "DUT crashed" in panic["message"], context
    assert "panic" in [event["kind"] for event in panic["events"]], context
    assert "esp32c6: the board is an esp32p4" in tests["test_idf_style.py::test_gets_an_address[esp32c6]"]["message"]
