"""The virtual board's supervisor: when it dies, the board says so and names its log."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from harness.boards.virtual.board import VirtualBoard
from harness.errors import BoardError
from harness.lab.veth import VethLab
from harness.testing import needs_root


@needs_root
def test_a_dead_supervisor_is_reported_with_the_path_of_its_log(tmp_path: Path) -> None:
    with VethLab(log_dir=tmp_path / "lab") as lab:
        board = VirtualBoard(lab, tmp_path)
        try:
            board.start(wait_online=False)
            assert board.process is not None and board.dut_processes(), "the firmware runs as a process"
            board.process.popen.send_signal(signal.SIGKILL)
            board.process.popen.wait(timeout=10)
            log = tmp_path / "virtual-board" / "supervisor.log"
            with pytest.raises(BoardError, match=rf"supervisor \(pid \d+\) is dead .*its log: {log}"):
                board.reset()
        finally:
            board.close()
