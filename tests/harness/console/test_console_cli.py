"""`hil log parse`: JSON lines, table, stdin, exit status and a clear error for a missing file."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

SAMPLES = Path(__file__).parent / "samples"


def test_json_one_object_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "parse", str(SAMPLES / "c6_assert.log"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [row["kind"] for row in rows if row["kind"] != "log"]
    assert kinds == ["assert", "reboot", "boot", "reset"]
    assert rows[1] == {
        "kind": "assert",
        "lineno": 2,
        "function": "xQueueSemaphoreTake",
        "file": "queue.c",
        "line": 1709,
        "expression": "pxQueue->uxItemSize == 0",
        "backtrace": ["0x40800a8e", "0x40805c22", "0x4080b8d9"],
        "elf_sha256": "aabbccddeeff0011",
    }


def test_table_lists_events(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "parse", str(SAMPLES / "c3_task_wdt.log")]) == 0
    out = capsys.readouterr().out
    assert "wdt" in out and "IDLE" in out and "reboot" in out


def test_stdin_and_exit_zero_on_garbage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "log", "parse", "-", "--json"],
        input=b"\xff\x00garbage\r\nRebooting...",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert json.loads(result.stdout.decode().splitlines()[-1]) == {"kind": "reboot", "lineno": 2}


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["log", "parse", str(tmp_path / "nope.log")]) == 2
    assert "not found" in capsys.readouterr().err


def test_iter_events_streams_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.console import cli

    monkeypatch.setattr(cli, "CHUNK_BYTES", 7)
    data = (SAMPLES / "p4_boot.log").read_bytes()
    from harness.console.events import parse_bytes

    assert [e.to_dict() for e in cli.iter_events(io.BytesIO(data))] == [e.to_dict() for e in parse_bytes(data)]
