"""The per-test guard against a fake board and canned console text: no root, no namespaces, milliseconds.

The console text is what ESP-IDF prints (the virtual board's crash dumps, ROM reset lines) and goes through
the real parser, so the guard is judged on the same events a real run produces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.boards.virtual.crashes import crash_lines
from harness.console.events import Event, LogParser
from harness.console.protocol import format_machine_line
from harness.errors import BoardError, DutTimeoutError
from harness.guard import STATS_SILENCE, Guard, GuardPolicy, over_budget, policy_for

SHA = "ab" * 32
BOOT = ["ESP-ROM:esp32p4-eco2-20240710", "rst:0x{code:x} ({reason}),boot:0x30f (SPI_FAST_FLASH_BOOT)",
        "I (25) boot: ESP-IDF v5.5 2nd stage bootloader", "I (120) main_task: Calling app_main()"]  # fmt: skip


class FakeConsole:
    """Console lines and the real parser's events, as `ConsoleMonitor` keeps them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.events: list[Event] = []
        self._parser = LogParser(log_events=False)

    def print(self, *lines: str) -> None:
        for line in lines:
            self.lines.append(line)
            self.events += self._parser.feed(f"{line}\n".encode())

    def mark(self) -> int:
        return len(self.lines)

    def events_between(self, start: int, end: int | None = None) -> list[Event]:
        stop = len(self.lines) if end is None else end
        return [event for event in self.events if start <= event.lineno - 1 < stop]

    def write_slice(self, path: Path, start: int, end: int | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in self.lines[start:end]))
        return path


class FakeBoard:
    """A board whose firmware counts frames, crashes, reboots and hangs on command."""

    def __init__(self) -> None:
        self.console = FakeConsole()
        self.planned_restarts = 0
        self.hung = False
        self.uptime_ms = 1000
        self.counters = dict.fromkeys(("rx_frames", "tx_frames", "rx_drops", "tx_fails", "frame_pool_drops"), 0)
        self.resets = 0

    @property
    def monitor(self) -> FakeConsole:
        return self.console

    def stats(self) -> dict[str, Any]:
        if self.hung:
            raise DutTimeoutError("DUT did not print HIL_STATS reply within 10 s")
        self.uptime_ms += 100
        stats = {**self.counters, "uptime_ms": self.uptime_ms, "heap_free": 100000}
        # The reply is a console line too: it ends whatever dump was being parsed, as on a real console.
        self.console.print(format_machine_line("HIL_STATS", self.uptime_ms, {"trigger": "cmd", **stats}))
        return stats

    def traffic(self, frames: int) -> None:
        self.counters["rx_frames"] += frames
        self.counters["tx_frames"] += frames

    def boot(self, code: int, reason: str) -> None:
        """A reset: counters start again at zero, the ROM prints its reset line."""
        self.counters = dict.fromkeys(self.counters, 0)
        self.uptime_ms = 50
        self.console.print(*(line.format(code=code, reason=reason) for line in BOOT))

    def crash(self, kind: str) -> None:
        self.console.print(*crash_lines(kind, ms=self.uptime_ms, elf_sha256=SHA, task="net_poll"))
        self.boot(0xC, "SW_CPU_RESET")

    def reboot(self) -> None:
        self.planned_restarts += 1
        self.console.print("I (2000) hil: rebooting on request")
        self.boot(0xC, "SW_CPU_RESET")

    def reset(self, wait_online: bool = True) -> None:
        self.resets += 1
        self.hung = False
        self.planned_restarts += 1
        self.boot(0x1, "POWERON")


@pytest.fixture
def board() -> FakeBoard:
    return FakeBoard()


def _run(guard: Guard, body: Any, policy: GuardPolicy | None = None, slice_path: Path | None = None) -> Any:
    """One test as the plugin runs it: before, the body, after; returns (verdict, what the test raises)."""
    guard.before(policy or GuardPolicy(), slice_path)
    error: BaseException | None = None
    try:
        body()
    except Exception as exc:
        error = exc
    verdict = guard.after(error)
    return verdict, verdict.exception(error)


def test_a_clean_test_passes_with_its_counter_deltas_and_slice(board: FakeBoard, tmp_path: Path) -> None:
    guard = Guard(board)
    board.console.print("I (900) app: before")

    def body() -> None:
        board.console.print("I (1000) app: during the test")
        board.traffic(42)

    verdict, raised = _run(guard, body, slice_path=tmp_path / "slice.log")
    assert raised is None and not verdict.failed and not guard.needs_reset
    assert verdict.counters["rx_frames"] == 42 and verdict.counters["tx_fails"] == 0
    assert verdict.console_slice is not None
    text = verdict.console_slice.read_text()
    assert "I (1000) app: during the test\n" in text and "before" not in text


def test_a_crash_fails_the_test_with_its_summary_and_asks_for_a_reset(board: FakeBoard) -> None:
    guard = Guard(board)
    verdict, raised = _run(guard, lambda: board.crash("panic"))
    assert isinstance(raised, AssertionError)
    assert "DUT crashed" in str(raised) and "panic" in str(raised)
    assert [event["kind"] for event in verdict.events][:1] == ["panic"]
    assert guard.needs_reset


def test_a_crash_explains_the_error_the_body_saw(board: FakeBoard) -> None:
    def body() -> None:
        board.crash("rust_panic")
        raise ConnectionResetError("peer reset the connection")

    _verdict, raised = _run(Guard(board), body)
    assert isinstance(raised, AssertionError) and "Rust panic" in str(raised)
    assert isinstance(raised.__cause__, ConnectionResetError)


def test_a_planned_reboot_passes(board: FakeBoard) -> None:
    guard = Guard(board)
    verdict, raised = _run(guard, board.reboot)
    assert raised is None and not guard.needs_reset
    assert [event["kind"] for event in verdict.events] == ["reset"]


def test_a_reset_nobody_planned_fails(board: FakeBoard) -> None:
    _verdict, raised = _run(Guard(board), lambda: board.boot(0x7, "HP_SYS_HP_WDT_RESET"))
    assert isinstance(raised, AssertionError) and "DUT reset unexpectedly" in str(raised)


def test_an_expected_crash_passes_and_any_other_kind_still_fails(board: FakeBoard) -> None:
    expecting = GuardPolicy(expected_crashes=frozenset({"wdt", "abort"}))
    verdict, raised = _run(Guard(board), lambda: board.crash("wdt"), expecting)
    assert raised is None
    assert verdict.events[0]["kind"] == "wdt", "an expected crash is still recorded"
    _, raised = _run(Guard(board), lambda: board.crash("panic"), expecting)
    assert isinstance(raised, AssertionError) and "panic" in str(raised)


def test_budget_exceeded_fails_naming_the_counter(board: FakeBoard) -> None:
    policy = policy_for({"rx_drops": 0, "rx_frames": 1000}, [{"rx_frames": 10}], ())

    def body() -> None:
        board.traffic(11)

    verdict, raised = _run(Guard(board), body, policy)
    assert isinstance(raised, AssertionError)
    assert str(raised) == "counter budget exceeded: rx_frames +11 (budget 10)"
    assert verdict.over_budget and verdict.counters["rx_frames"] == 11


def test_the_body_error_wins_over_the_budget(board: FakeBoard) -> None:
    def body() -> None:
        board.traffic(5)
        raise ValueError("the scenario's own assertion")

    _, raised = _run(Guard(board), body, GuardPolicy(budget={"rx_frames": 0}))
    assert isinstance(raised, ValueError)


def test_a_hung_dut_fails_its_test_then_is_reset_and_the_next_test_passes(board: FakeBoard) -> None:
    guard = Guard(board)

    def hang() -> None:
        board.hung = True
        raise TimeoutError("download stalled")

    verdict, raised = _run(guard, hang)
    assert isinstance(raised, TimeoutError) and verdict.dut_silent and guard.needs_reset
    assert verdict.counters == {}, "no delta without an after snapshot"

    guard.recover()  # what the plugin does right after the verdict
    assert board.resets == 1 and not guard.needs_reset
    verdict, raised = _run(guard, lambda: board.traffic(3))
    assert raised is None, "the reset that recovered the board is not the next test's unplanned reset"
    assert verdict.counters["rx_frames"] == 3


def test_a_dut_that_falls_silent_without_an_error_fails_as_a_timeout(board: FakeBoard) -> None:
    def fall_silent() -> None:
        board.hung = True

    _, raised = _run(Guard(board), fall_silent)
    assert isinstance(raised, DutTimeoutError) and str(raised) == STATS_SILENCE


def test_recovery_that_fails_is_a_board_error(board: FakeBoard) -> None:
    guard = Guard(board)
    guard.needs_reset = True

    def broken_reset(wait_online: bool = True) -> None:
        raise DutTimeoutError("DUT did not print HIL_HELLO after reset")

    board.reset = broken_reset  # type: ignore[method-assign]
    with pytest.raises(BoardError, match="did not come back after a reset"):
        guard.recover()
    assert guard.needs_reset


def test_counter_deltas_across_a_reset_count_from_the_new_boot(board: FakeBoard) -> None:
    policy = GuardPolicy(expected_crashes=frozenset({"abort"}))

    def body() -> None:
        board.traffic(500)  # counted by the firmware that is about to die
        board.crash("abort")
        board.traffic(7)  # the new boot's counters start at zero

    verdict, raised = _run(Guard(board), body, policy)
    assert raised is None
    assert verdict.counters["rx_frames"] == 7


def test_over_budget_text() -> None:
    assert over_budget({"a": 3, "b": 1}, {"a": 2, "b": 1, "c": 0}) == "a +3 (budget 2)"
    assert over_budget({}, {"a": 0}) == ""
