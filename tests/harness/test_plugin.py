"""The pytest plugin: inert unless used, its options, and how it records tests (interrupted ones included)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.boards.kinds import board_kind
from harness.config import LabConfig
from harness.results.record import RunRecord
from harness.session import INTERRUPTED, HilSession, record_nodeid

UNRELATED = """
import signal

import pytest


@pytest.fixture
def board():
    return "a board of another project"


@pytest.fixture
def metrics():
    return {}


def test_unrelated(board, metrics):
    assert board == "a board of another project"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the harness installed a handler"
"""


def _pytest(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


def test_a_plain_pytest_of_an_unrelated_file_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_other.py").write_text(UNRELATED)
    done = _pytest("-q", "-p", "no:cacheprovider", "test_other.py", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["test_other.py"]
    assert "esp-smoltcp-hil" not in done.stdout


def test_the_sigterm_handler_lives_only_as_long_as_the_session(tmp_path: Path) -> None:
    (tmp_path / "test_uses_harness.py").write_text(
        "import signal\n\n\ndef test_it(hil_session):\n"
        "    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL\n"
    )
    script = textwrap.dedent(
        f"""
        import signal, sys
        import pytest
        code = pytest.main(["-q", "-p", "no:cacheprovider", {str(tmp_path / "test_uses_harness.py")!r},
                            "--results-dir", {str(tmp_path / "results")!r}, "--no-import"])
        assert code == 0, code
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "handler left behind"
        print("restored")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "restored" in done.stdout, done.stdout + done.stderr
    assert list((tmp_path / "results").glob("*.json")), "a test using a harness fixture is recorded"


def test_an_option_of_another_board_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "test_none.py").write_text("def test_nothing():\n    pass\n")
    done = _pytest("-p", "no:cacheprovider", "--board", "esp32p4", "--fault", "tx_cap_60pct", "test_none.py",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 4
    assert "--fault belongs to --board virtual, not --board esp32p4" in done.stderr


def test_a_bad_config_file_stops_the_run_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "test_none.py").write_text("def test_nothing():\n    pass\n")
    (tmp_path / "hil.toml").write_text("[thresholds]\nthroughput_floor_pc = 50\n")
    done = _pytest("-p", "no:cacheprovider", "--hil-config", "hil.toml", "test_none.py", cwd=tmp_path)
    assert done.returncode == 4
    assert "thresholds.throughput_floor_pc: unknown key" in done.stderr


def test_coexists_with_pytest_embedded_and_owns_its_options_without_it(tmp_path: Path) -> None:
    (tmp_path / "test_none.py").write_text("def test_nothing():\n    pass\n")
    # pytest-embedded's plugin loaded: its spellings (--port, --skip-autoflash y) are its own, no clash.
    done = _pytest("-p", "no:cacheprovider", "--skip-autoflash", "y", "--collect-only", "test_none.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # Left out, as `hil run` leaves it out: the harness registers them, --skip-autoflash as a plain flag.
    done = _pytest("-p", "no:cacheprovider", "-p", "no:pytest_embedded", "--board", "esp32p4", "--skip-autoflash",
                   "--port", "/dev/null", "--collect-only", "test_none.py", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_hil_run_runs_exactly_the_given_paths_and_repeats(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text("def test_only_me():\n    pass\n")
    command = [sys.executable, "-m", "harness.cli", "run", "test_mine.py", "--repeat", "3", "-q", "--results-dir=out"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout and "scenarios" not in done.stdout


def test_hil_run_help_shows_the_harness_options() -> None:
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--help"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0
    for option in ("--board", "--hil-config", "--results-dir", "--fault", "--port", "--skip-autoflash", "--repeat",
                   "--soak-minutes", "--target"):  # fmt: skip
        assert option in done.stdout, option
    assert "--junitxml" not in done.stdout, "pytest's own options belong to `pytest --help`"


# --- which tests are HIL tests: those that use the run, recognised by identity, not by fixture name ---------

RECOGNITION = """
import pytest


@pytest.fixture
def board():
    return "this file's own board"


@pytest.fixture
def broker(hil_session):
    raise RuntimeError("the broker did not start")


@pytest.fixture
def stopped_in_setup(hil_session):
    raise KeyboardInterrupt


def test_uses_the_run(hil_session):
    pass


def test_has_a_board_of_its_own(board):
    assert board == "this file's own board"


def test_fails_in_its_own_fixture_over_the_run(broker):
    pass
"""


def _recorded(tmp_path: Path, source: str) -> tuple[dict, subprocess.CompletedProcess]:
    (tmp_path / "test_recognition.py").write_text(source)
    done = _pytest("-p", "no:cacheprovider", "--results-dir", "out", "--no-import", "test_recognition.py",
                   cwd=tmp_path)  # fmt: skip
    (results,) = (tmp_path / "out").glob("*.json")
    record = json.loads(results.read_text())
    return record, done


def test_only_tests_that_use_the_run_are_recorded(tmp_path: Path) -> None:
    record, done = _recorded(tmp_path, RECOGNITION)
    outcomes = {test["nodeid"].split("::")[1]: test["outcome"] for test in record["tests"]}
    assert outcomes == {"test_uses_the_run": "passed", "test_fails_in_its_own_fixture_over_the_run": "error"}
    assert "has_a_board_of_its_own" not in done.stdout, "a fixture called `board` is not the harness's board"
    assert record["interrupted"] is False


def test_a_test_stopped_in_its_own_fixture_over_the_run_is_interrupted(tmp_path: Path) -> None:
    stopped = RECOGNITION + "\n\ndef test_stopped(stopped_in_setup):\n    pass\n"
    record, _ = _recorded(tmp_path, stopped.replace("def test_has_a_board", "def has_a_board"))
    assert {test["nodeid"].split("::")[1]: test["outcome"] for test in record["tests"]}["test_stopped"] == INTERRUPTED
    assert record["interrupted"] is True


def test_a_test_stopped_mid_call_is_interrupted_in_the_results_file(tmp_path: Path) -> None:
    record, _ = _recorded(tmp_path, "def test_stopped(hil_session):\n    raise KeyboardInterrupt\n")
    assert [(test["nodeid"], test["outcome"]) for test in record["tests"]] == [
        ("test_recognition.py::test_stopped", INTERRUPTED)
    ]
    assert record["interrupted"] is True


# --- what the results file says about each test -----------------------------------------------------------


def _session(tmp_path: Path) -> HilSession:
    options = SimpleNamespace(app_elf=None, no_import=True, board="virtual", dhcp_force=False, results_db=None)
    return HilSession(options, LabConfig(), RunRecord(tmp_path, "run1"), board_kind("virtual"))


def _report(nodeid: str, when: str, outcome: str = "passed") -> pytest.TestReport:
    longrepr = None if outcome == "passed" else ("file.py", 1, "Skipped: because") if outcome == "skipped" else "boom"
    return pytest.TestReport(nodeid, ("file.py", 1, "t"), {}, outcome, longrepr, when)  # type: ignore[arg-type]


def test_a_test_stopped_mid_call_is_interrupted_never_passed(tmp_path: Path) -> None:
    session = _session(tmp_path)
    session.test_started("t::a")
    for when in ("setup", "call", "teardown"):
        session.record_report(_report("t::a", when))
    session.test_started("t::b")
    session.record_report(_report("t::b", "setup"))  # SIGTERM arrives during the call: no call report
    session.finish(interrupted=True)
    record = json.loads((tmp_path / "run1.json").read_text())
    assert {t["nodeid"]: t["outcome"] for t in record["tests"]} == {"t::a": "passed", "t::b": INTERRUPTED}
    assert record["interrupted"] is True


def test_a_run_that_ends_normally_is_not_interrupted(tmp_path: Path) -> None:
    session = _session(tmp_path)
    session.test_started("t::a")
    session.record_report(_report("t::a", "setup", "skipped"))
    session.test_started("t::b")
    for when, outcome in (("setup", "passed"), ("call", "failed"), ("teardown", "passed")):
        session.record_report(_report("t::b", when, outcome))
    session.finish(interrupted=False)
    record = json.loads((tmp_path / "run1.json").read_text())
    assert {t["nodeid"]: t["outcome"] for t in record["tests"]} == {"t::a": "skipped", "t::b": "failed"}
    assert record["interrupted"] is False


def test_a_test_left_without_an_outcome_marks_the_run_interrupted(tmp_path: Path) -> None:
    session = _session(tmp_path)
    session.test_started("t::a")  # its setup began; nothing reported since (the process was stopped)
    session.finish(interrupted=False)
    record = json.loads((tmp_path / "run1.json").read_text())
    assert record["tests"][0]["outcome"] == INTERRUPTED and record["interrupted"] is True


@pytest.mark.parametrize(
    ("nodeid", "record"),
    [
        ("t.py::test_a[repeat2]", "t.py::test_a"),
        ("t.py::test_ping[56-repeat3]", "t.py::test_ping[56]"),
        ("t.py::test_ping[repeat1-56]", "t.py::test_ping[56]"),
        ("t.py::test_repeat_me[repeated]", "t.py::test_repeat_me[repeated]"),
    ],
)
def test_repetitions_share_their_test_record(nodeid: str, record: str) -> None:
    assert record_nodeid(nodeid) == record


def test_a_repeated_test_keeps_its_worst_outcome(tmp_path: Path) -> None:
    session = _session(tmp_path)
    for nodeid, outcome in (("t::a[repeat1]", "passed"), ("t::a[repeat2]", "failed"), ("t::a[repeat3]", "passed")):
        session.test_started(nodeid)
        for when in ("setup", "call", "teardown"):
            session.record_report(_report(nodeid, when, outcome if when == "call" else "passed"))
    session.finish(interrupted=False)
    record = json.loads((tmp_path / "run1.json").read_text())
    assert [(t["nodeid"], t["outcome"]) for t in record["tests"]] == [("t::a", "failed")]


# --- conventions across the `hil` commands -----------------------------------------------------------------


CONFIG_COMMANDS = [["doctor"], ["build"], ["gate"], ["compare", "A", "B"], ["report"], ["bisect", "A", "B"],
                   ["dashboard", "--out", "site"]]  # fmt: skip


@pytest.mark.parametrize("command", CONFIG_COMMANDS, ids=lambda command: command[0])
def test_every_command_takes_the_config_file_as_hil_config(command: list[str]) -> None:
    from harness.cli import build_parser

    parser = build_parser()
    assert parser.parse_args([*command, "--hil-config", "lab.toml"]).hil_config == Path("lab.toml")
    with pytest.raises(SystemExit):
        parser.parse_args([*command, "--config", "lab.toml"])
