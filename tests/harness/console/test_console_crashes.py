"""The virtual board's crash output parses to the crash it stands for, and summaries describe it."""

from __future__ import annotations

import re

import pytest

from harness.boards.virtual.crashes import CRASH_KINDS, crash_lines, reset_reason_for
from harness.console.events import parse_bytes
from harness.console.summary import CRASH_KINDS as FAILING_KINDS
from harness.console.summary import crash_summary
from harness.errors import ConfigError

SHA = "5b8e4da4121d0f52" + "0" * 48
EXPECTED = {
    "panic": ["panic", "reboot"],
    "abort": ["abort", "reboot"],
    "assert": ["assert", "reboot"],
    "wdt": ["wdt", "abort", "reboot"],
    "stack_overflow": ["stack_overflow", "reboot"],
    "rust_panic": ["rust_panic", "abort", "reboot"],
}


@pytest.mark.parametrize("kind", CRASH_KINDS)
def test_crash_lines_round_trip(kind: str) -> None:
    lines = crash_lines(kind, ms=4321, elf_sha256=SHA, task="worker")
    assert lines[-1] == "Rebooting..."
    events = [e for e in parse_bytes(("\r\n".join(lines) + "\r\n").encode()) if e.kind != "log"]
    assert [e.kind for e in events] == EXPECTED[kind]
    crash = events[0]
    assert crash.kind in FAILING_KINDS
    dumped = next(e for e in events if "elf_sha256" in e.fields)
    assert dumped.fields["elf_sha256"] == SHA[:16]
    assert re.fullmatch(r"0x4(00[0-7]|ff[0-3])[0-9a-f]{4}", dumped.fields["pc"])
    assert dumped.fields["registers"]["MHARTID"] == "0x00000000"
    summary = crash_summary(crash)
    assert "\n" not in summary
    assert f"line {crash.lineno}" in summary


def test_crash_details_per_kind() -> None:
    def first(kind: str, **kwargs):
        lines = crash_lines(kind, ms=10, elf_sha256=SHA, **kwargs)
        return next(e for e in parse_bytes("\n".join(lines).encode()) if e.kind != "log")

    panic = first("panic", core=1)
    assert panic.fields["reason"] == "Load access fault"
    assert panic.fields["core"] == 1 and panic.fields["mcause"] == "0x00000005"
    assert first("stack_overflow", task="httpd").fields["task"] == "httpd"
    assert first("wdt").fields == {"type": "task", "tasks": ["IDLE0"], "running": ["main", "IDLE1"]}
    assert first("rust_panic").fields["location"] == "src/iface.rs:412:21"


def test_same_kind_gives_same_output() -> None:
    assert crash_lines("panic", ms=1, elf_sha256=SHA) == crash_lines("panic", ms=1, elf_sha256=SHA)


def test_reset_reasons() -> None:
    for kind in CRASH_KINDS:
        assert reset_reason_for(kind) == (0xC, "SW_CPU_RESET")
    assert reset_reason_for("hw_wdt") == (0x7, "HP_SYS_HP_WDT_RESET")
    with pytest.raises(ConfigError, match="use one of"):
        reset_reason_for("meltdown")
    with pytest.raises(ConfigError, match="unknown crash kind"):
        crash_lines("meltdown", ms=0, elf_sha256=SHA)


def test_summary_of_a_decoded_panic_and_a_reset() -> None:
    from pathlib import Path

    data = (Path(__file__).parent / "samples" / "esp32_load_prohibited.log").read_bytes()
    panic = next(e for e in parse_bytes(data) if e.kind == "panic")
    text = crash_summary(panic)
    assert "reason: LoadProhibited" in text
    assert "PC 0x400d1234 on core 1" in text
    assert "app_main (/home/user/proj/main/main.c:36)" in text
    reset = next(e for e in parse_bytes(data) if e.kind == "reset")
    assert "unexpected reset" in crash_summary(reset) and "SW_CPU_RESET" in crash_summary(reset)
    assert "reset" in FAILING_KINDS and "log" not in FAILING_KINDS
