"""pytest-embedded's `dut` on the harness's console: the dut against a real monitor on a pty (no root), and which
`dut` a session gets when pytest-embedded's plugin is loaded too."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pexpect
import pytest

from harness.boards.board import BuildInfo
from harness.console.monitor import ConsoleMonitor, RawPipe
from harness.dut import HilApp, HilDut, check_target, skip_unless_for
from harness.errors import ConfigError
from harness.run_command import rootdir


class PtyConsole:
    """A console on a pty: what the DUT prints goes in through the master end, what is typed comes out of it."""

    def __init__(self, tmp_path: Path) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)  # no echo: what the harness types must not come back as console output
        self.monitor = ConsoleMonitor(os.ttyname(slave), tmp_path / "console.log").start()
        os.close(slave)  # the monitor holds its own handle
        self.port = self.monitor.port

    def print(self, text: str) -> None:
        os.write(self.master, text.encode())

    def typed(self, count: int, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        got = b""
        while len(got) < count and time.monotonic() < deadline:
            got += os.read(self.master, count - len(got))
        return got

    def close(self) -> None:
        self.monitor.stop()
        os.close(self.master)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[PtyConsole]:
    pty = PtyConsole(tmp_path)
    yield pty
    pty.close()


def _dut(console: PtyConsole, tmp_path: Path, pipe: RawPipe) -> HilDut:
    board = SimpleNamespace(monitor=console.monitor, port=console.port)
    app = HilApp(BuildInfo(), "esp32p4")
    return HilDut(board, pipe, target="esp32p4", app=app, logdir=tmp_path, test_case_name="t")  # type: ignore[arg-type]


def test_expect_and_write_behave_as_pytest_embedded_s(console: PtyConsole, tmp_path: Path) -> None:
    console.print("before the pipe opened\r\n")
    console.monitor.wait_for_text("before the pipe", since=0, timeout=5)
    with RawPipe(console.monitor) as pipe:
        dut = _dut(console, tmp_path, pipe)
        console.print("ESP-ROM:esp32p4-eco2-20240710\r\n\x1b[0;32mI (25) boot: chip revision: v1.0\x1b[0m\r\nhil> ")
        match = dut.expect(r"chip revision: v(\d+)\.(\d+)", timeout=5)
        assert match.group(1) == b"1", "a match over the raw bytes, as pytest-embedded returns it"
        assert dut.expect_exact("hil> ", timeout=5) == b"hil> "
        with pytest.raises(pexpect.TIMEOUT, match='Not found "before the pipe opened"'):
            dut.expect_exact("before the pipe opened", timeout=0.3)  # the dut sees the console from its start on
        dut.write("version")
        assert console.typed(8) == b"version\n", "a str is a line"
        dut.write(b"\x03")
        assert console.typed(1) == b"\x03", "bytes go as they are"
        assert dut.target == "esp32p4" and dut.serial.port == console.port and dut.app.binary_path is None
        dut.close()


def test_a_dut_that_nobody_reads_never_holds_up_the_monitor(console: PtyConsole, tmp_path: Path) -> None:
    line = "I (1) hil: " + "x" * 100 + "\r\n"
    count = 2000  # ~230 KB: several times what a pipe holds
    with RawPipe(console.monitor) as pipe:
        dut = _dut(console, tmp_path, pipe)
        writer = threading.Thread(target=lambda: [console.print(line) for _ in range(count)])
        writer.start()
        mark = console.monitor.wait_for(lambda ln: ln.index >= count - 1, since=0, timeout=30, what="every line")
        writer.join(timeout=5)
        assert mark.text.endswith("x"), "the monitor kept up while the dut read nothing"
        console.print("the end\r\n")
        dut.expect_exact("the end", timeout=10)  # and the dut still gets every byte, in order
        assert dut.pexpect_proc.before.count(b"xxxx\r\n") >= count - 1
        dut.close()


def test_unity_cases_that_failed_fail_the_test(console: PtyConsole, tmp_path: Path) -> None:
    with RawPipe(console.monitor) as pipe:
        dut = _dut(console, tmp_path, pipe)
        console.print("test.c:10:test_one:PASS\r\ntest.c:20:test_two:FAIL: expected 1\r\n\r\n"
                      "-----------------------\r\n2 Tests 1 Failures 0 Ignored\r\nFAIL\r\n")  # fmt: skip
        dut.expect_unity_test_output(timeout=5)
        with pytest.raises(AssertionError, match="Unity test failed: test_two"):
            dut.close()


def _item(*markers: str) -> pytest.Item:
    return SimpleNamespace(iter_markers=lambda: [SimpleNamespace(name=name) for name in markers])  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("target", "markers", "skipped"),
    [
        ("esp32p4", (), None),
        ("esp32p4", ("esp32p4", "esp32c3", "generic"), None),
        ("esp32", (), "for esp32: the board is an esp32p4"),
        ("esp32p4", ("esp32", "esp32s3"), "for esp32, esp32s3: the board is an esp32p4"),
        ("esp32p4|esp32p4", (), "a multi-DUT test"),
    ],
)
def test_a_test_for_another_target_is_skipped(target: str, markers: tuple[str, ...], skipped: str | None) -> None:
    if skipped is None:
        skip_unless_for(_item(*markers), target, "esp32p4")
        return
    with pytest.raises(pytest.skip.Exception, match=skipped):
        skip_unless_for(_item(*markers), target, "esp32p4")


def test_target_option_must_be_the_board_s() -> None:
    check_target(SimpleNamespace(target="esp32p4", board="virtual"), "esp32p4")
    check_target(SimpleNamespace(target=None, board="virtual"), "esp32p4")
    with pytest.raises(ConfigError, match="--target esp32c3: the virtual board is an esp32p4"):
        check_target(SimpleNamespace(target="esp32c3", board="virtual"), "esp32p4")


def test_the_app_shows_the_board_s_build(tmp_path: Path) -> None:
    build = BuildInfo(tmp_path / "build", tmp_path / "build" / "hil_app.elf", {"IDF_TARGET": "esp32p4"})
    app = HilApp(build, "esp32p4")
    assert (app.binary_path, app.elf_file, app.sdkconfig) == (str(build.build_dir), str(build.elf), build.sdkconfig)
    assert HilApp(BuildInfo(), "esp32p4", tmp_path / "given.elf").elf_file == str(tmp_path / "given.elf")


def test_hil_run_of_a_file_outside_the_project_keeps_its_name_in_the_node_ids(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "test_x.py").write_text("")
    (tmp_path / "hil.toml").write_text("")
    assert rootdir(root, ["-k", "ping", "--hil-config", str(tmp_path / "hil.toml")]) == root
    assert rootdir(root, [str(root / "tests" / "scenarios" / "test_ping.py")]) == root
    assert rootdir(root, ["-q", f"{tmp_path / 'a' / 'test_x.py'}::test_one"]) == tmp_path / "a"


EMBEDDED_STYLE = """
from pytest_embedded import Dut


def test_with_a_dut(dut: Dut, target) -> None:
    pass
"""
EMBEDDED = "pytest_embedded/plugin.py"


@pytest.mark.parametrize(
    ("args", "dut_from", "target_from"),
    [
        ((), EMBEDDED, EMBEDDED),  # pytest-embedded loaded, harness not asked for: all pytest-embedded's
        # A harness option: the harness's `dut` wins; `target` stays pytest-embedded's, which its autouse fixtures
        # request for every test (the harness's would make every test a HIL test).
        (("--board", "virtual"), "harness/dut.py", EMBEDDED),
        (("-p", "no:pytest_embedded"), "harness/dut.py", "harness/dut.py"),  # as `hil run` runs: the harness's
    ],
)
def test_which_dut_and_target_a_session_gets(tmp_path: Path, args: tuple[str, ...], dut_from: str,
                                             target_from: str) -> None:  # fmt: skip
    (tmp_path / "test_style.py").write_text(EMBEDDED_STYLE)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--fixtures-per-test", *args,
                           "test_style.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for fixture, provider in (("dut", dut_from), ("target", target_from)):
        (line,) = [line for line in done.stdout.splitlines() if line.startswith(f"{fixture} -- ")]
        assert line.split(" -- ")[1].rsplit(":", 1)[0].endswith(provider), line
