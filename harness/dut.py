"""pytest-embedded's `dut` on the harness's board: ESP-IDF-style tests run unchanged, guarded like any HIL test.

A test written for pytest-embedded (`dut.expect(...)`, `dut.expect_exact(...)`, `dut.write(...)`, a target
marker such as `@pytest.mark.esp32p4`, a `target` parameter) gets a `HilDut`: pytest-embedded's own `Dut`,
used as a library, whose pexpect process reads the board's raw console through the harness's
`ConsoleMonitor`. Like pytest-embedded's `esp` service, every test that takes `dut` starts from a fresh boot:
the fixture resets the board and the dut sees the console from the ROM's first line on. As `dut` stands on
the `board` fixture, the test gets what every HIL test gets: the guard's crash verdict, console slice,
counters and budgets, its metrics (`metrics` fixture) and its record in the results.

This module is a pytest plugin that `harness.plugin` registers in `pytest_configure` (`register`), never
through an entry point, because pytest-embedded's plugin defines `dut` and `target` too and, of two plugins,
the one registered last provides a fixture:

- `hil run` leaves pytest-embedded's plugin out (`-p no:pytest_embedded`): this `dut` and `target` are the
  only ones;
- plain `pytest` where pytest-embedded's plugin loads (an ESP-IDF environment) with a harness option
  (`--board virtual`, `--board esp32p4`, ...): this module is registered after it, so this `dut` wins;
  `target` stays pytest-embedded's (its autouse fixtures request it for every test, and it reads the same
  `target` parameter and `--target`);
- plain `pytest` there without a harness option: nothing is registered; pytest-embedded's `dut` serves the
  test as it always did.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, AnyStr

import pytest
from pytest_embedded.app import App
from pytest_embedded.dut import Dut
from pytest_embedded.log import PexpectProcess
from pytest_embedded.utils import Meta, to_bytes

from harness.boards.board import Board, BuildInfo
from harness.boards.kinds import board_kind
from harness.console.monitor import RawPipe
from harness.errors import ConfigError, HilError
from harness.paths import firmware_dir
from harness.session import HilSession

NAME = "esp-smoltcp-hil-dut"
TARGET_NAME = "esp-smoltcp-hil-target"
# ESP-IDF targets, as pytest-embedded's `target` and ESP-IDF's markers name them.
TARGETS = ("esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32c61", "esp32h2",
           "esp32h21", "esp32h4", "esp32p4", "linux")  # fmt: skip
# ESP-IDF's runner markers that every harness board answers to (it registers them in its own conftest).
RUNNER_MARKERS = {
    "generic": "an ESP-IDF runner with a plain board (every harness board is one)",
    "ethernet": "an ESP-IDF runner whose board is cabled to Ethernet (every harness board is)",
    "eth_ip101": "an ESP-IDF runner whose board has an IP101 PHY (the P4-Nano; the virtual board stands for it)",
}


def register(config: pytest.Config, harness_asked_for: bool) -> None:
    """Register `dut` (and `target`, unless pytest-embedded's plugin provides it) when the harness should serve it."""
    embedded = config.pluginmanager.has_plugin("pytest_embedded")
    if harness_asked_for or not embedded:
        config.pluginmanager.register(sys.modules[__name__], NAME)
    if not embedded:
        config.pluginmanager.register(TargetFixture(), TARGET_NAME)


def unregister(config: pytest.Config) -> None:
    """Undo `register`."""
    for name in (NAME, TARGET_NAME):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)


def pytest_configure(config: pytest.Config) -> None:
    """Register the target markers and the ESP-IDF runner markers the harness's boards answer to."""
    for target in TARGETS:
        config.addinivalue_line("markers", f"{target}: a test for {target}; skipped on a board of another target")
    for marker, text in RUNNER_MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {text}")


def check_target(options: Any, board_target: str) -> None:
    """`--target` (the harness's, or pytest-embedded's when its plugin is loaded) must name the board's target.

    Raises:
        ConfigError: it names another one.
    """
    target = getattr(options, "target", None)
    if target and target != board_target:
        raise ConfigError(f"--target {target}: the {options.board} board is an {board_target}")


def skip_unless_for(node: pytest.Item, target: str, board_target: str) -> None:
    """Skip a test meant for another target than the board's: by its `target` value, then its target markers."""
    if "|" in target:
        pytest.skip(f"a multi-DUT test (target {target}): the harness drives one board")
    if target != board_target:
        pytest.skip(f"for {target}: the board is an {board_target}")
    marked = sorted({marker.name for marker in node.iter_markers() if marker.name in TARGETS})
    if marked and board_target not in marked:
        pytest.skip(f"for {', '.join(marked)}: the board is an {board_target}")


class HilSerial:
    """What a test uses of pytest-embedded's `dut.serial`, on the harness's console: port, baud rate, reset."""

    def __init__(self, board: Board) -> None:
        self._board = board

    @property
    def port(self) -> str:
        """The console port (device path or URL)."""
        return self._board.port

    @property
    def baud(self) -> int:
        """The console's baud rate."""
        return self._board.monitor.baudrate

    def hard_reset(self) -> None:
        """Pulse EN and follow the boot up to HIL_HELLO; a planned reset, which the guard does not hold against
        the test."""
        self._board.reset(wait_online=False)


class HilApp(App):
    """pytest-embedded's `App` for the firmware the board runs: build directory, ELF, sdkconfig and target.

    Args:
        build: what the board knows of its ESP-IDF build (nothing for the virtual board).
        target: the board's target.
        app_elf: the ELF given with `--app-elf`, when the build does not name one.
    """

    def __init__(self, build: BuildInfo, target: str, app_elf: Path | None = None) -> None:
        directory = build.build_dir
        elf = build.elf or app_elf
        super().__init__(
            app_path=str(directory.parent if directory else firmware_dir() / "hil_app"),
            build_dir=str(directory) if directory else None,
            binary_path=str(directory) if directory else None,  # not a `build` folder of the current directory
            target=target,
            elf_file=str(elf) if elf else None,
            sdkconfig=dict(build.sdkconfig),
        )


class HilDut(Dut):
    """pytest-embedded's `Dut` whose pexpect process reads the board's console from a pipe of the monitor.

    `expect`, `expect_exact` (their return values, timeouts and `pexpect.TIMEOUT`) and `expect_unity_test_output`
    are pytest-embedded's own; `write` types on the console through the monitor (a str gets a newline, bytes
    go as they are, as pytest-embedded's serial `dut` does).

    Args:
        board: the started board.
        pipe: the console's raw bytes since this test's reset.
        target: the board's target.
        app: the firmware's build.
        logdir: the run's artifacts directory.
        test_case_name: the test's name.
    """

    def __init__(
        self, board: Board, pipe: RawPipe, *, target: str, app: App, logdir: Path, test_case_name: str
    ) -> None:
        super().__init__(
            pexpect_proc=PexpectProcess(os.dup(pipe.fileno())),
            msg_queue=None,
            app=app,
            pexpect_logfile=str(board.monitor.log_path),  # the whole console, which failed expects point to
            test_case_name=test_case_name,
            meta=Meta(str(logdir), {}, {}),
        )
        self.board = board
        self.target = target
        self.serial = HilSerial(board)

    def write(self, data: AnyStr) -> None:
        """Type on the console."""
        self.board.monitor.write(to_bytes(data, "\n"))

    def close(self) -> None:
        """Close the pexpect process; unity cases that failed fail the test, as pytest-embedded's plugin has it."""
        self.pexpect_proc.terminate()
        failed = [case.name for case in self.testsuite.failed_cases]
        if failed:
            raise AssertionError(f"Unity test failed: {', '.join(failed)}")


class TargetFixture:
    """The `target` fixture, for sessions without pytest-embedded's plugin (whose own `target` serves otherwise)."""

    @pytest.fixture
    def target(self, request: pytest.FixtureRequest) -> str:
        """The ESP-IDF target of the test: its `target` parameter (`indirect`), else `--target`, else the board's.

        A test for another target than the board's is skipped.
        """
        board_target = board_kind(request.config.option.board).target
        value = str(getattr(request, "param", None) or getattr(request.config.option, "target", None) or board_target)
        skip_unless_for(request.node, value, board_target)
        return value


@pytest.fixture
def dut(request: pytest.FixtureRequest, target: str | None, board: Board, hil_session: HilSession) -> Iterator[HilDut]:
    """pytest-embedded's `Dut` on the board, from a fresh boot: `expect`, `expect_exact`, `write`, `serial`, `app`."""
    board_target = hil_session.kind.target
    # Again here: a `target` parametrized directly bypasses its fixture, and pytest-embedded's does not skip.
    skip_unless_for(request.node, str(target or board_target), board_target)
    with RawPipe(board.monitor) as pipe:
        try:
            board.reset(wait_online=False)
        except HilError as exc:
            pytest.fail(f"the board did not boot after the dut's reset: {exc}", pytrace=False)
        app = HilApp(board.firmware_build(), board_target, hil_session.options.app_elf)
        device = HilDut(board, pipe, target=board_target, app=app, logdir=hil_session.record.artifacts_dir,
                        test_case_name=request.node.name)  # fmt: skip
        try:
            yield device
        finally:
            device.close()
