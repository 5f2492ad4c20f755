"""The per-test guard: what every test that touches the board gets for free, as a plain object.

Around each such test the guard reads the board's HIL_STATS counters before and after (their deltas are
recorded and held to the test's budget), judges the console events of the test's slice (a crash or a
reset nobody planned fails the test unless the test declared it expects that crash), decodes crash
backtraces, writes the console slice, and notes when the board must be reset before the next test (it
crashed, or stopped answering). `before()` and `after(error)` are all a caller needs; the pytest plugin
calls them around the test call, and the unit tests call them with a fake board, in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.console.decode import BacktraceDecoder
from harness.console.events import Event
from harness.console.protocol import counter_deltas, heap_deltas
from harness.console.verdict import decode_crashes, judge
from harness.errors import BoardError, DutTimeoutError, HilError

STATS_SILENCE = "DUT stopped answering on its console (no HIL_STATS reply within 10 s)"


class GuardedConsole(Protocol):
    """What the guard needs of a board's console (`harness.console.monitor.ConsoleMonitor` has it)."""

    def mark(self) -> int: ...

    def events_between(self, start: int, end: int | None = None) -> list[Event]: ...

    def write_slice(self, path: Path, start: int, end: int | None = None) -> Path: ...


class GuardedBoard(Protocol):
    """What the guard needs of a board (`harness.boards.board.Board` has it)."""

    planned_restarts: int

    @property
    def monitor(self) -> GuardedConsole: ...

    def stats(self) -> dict[str, Any]: ...

    def reset(self, wait_online: bool = True) -> Any: ...


@dataclass(frozen=True)
class GuardPolicy:
    """What one test declares: its counter budget and the crash kinds it expects."""

    budget: Mapping[str, int] = field(default_factory=dict)
    expected_crashes: frozenset[str] = frozenset()


@dataclass
class Verdict:
    """What the guard found about one test.

    Attributes:
        counters: HIL_STATS deltas over the test (empty when a snapshot is missing).
        events: the console events worth keeping with the test (crashes, resets, core dumps).
        console_slice: the slice file written for the test, or None.
        crash: the failure message for crashes and unplanned resets, or "".
        dut_silent: the board did not answer `stats` after the test.
        over_budget: the counters over their budget, as text, or "".
    """

    counters: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    console_slice: Path | None = None
    crash: str = ""
    dut_silent: bool = False
    over_budget: str = ""

    @property
    def failed(self) -> bool:
        """Whether the guard fails the test by itself."""
        return bool(self.crash or self.dut_silent or self.over_budget)

    def exception(self, error: BaseException | None) -> BaseException | None:
        """What the test must raise, given the error its body raised (None: it passes).

        A crash explains any error the body saw, so it wins; then the body's own error; then a DUT that fell
        silent; then the budget.
        """
        if self.crash:
            failure = AssertionError(self.crash)
            failure.__cause__ = error
            return failure
        if error is not None:
            return error
        if self.dut_silent:
            return DutTimeoutError(STATS_SILENCE)
        if self.over_budget:
            return AssertionError(f"counter budget exceeded: {self.over_budget}")
        return None


class Guard:
    """The guard of one board for a whole run.

    Args:
        board: the board (a `Board`, or anything with the same console and stats).
        decoder: decodes crash backtraces (None: crashes are reported undecoded).
    """

    def __init__(self, board: GuardedBoard, decoder: BacktraceDecoder | None = None) -> None:
        self.board = board
        self.decoder = decoder
        self.needs_reset = False
        self._policy = GuardPolicy()
        self._slice_path: Path | None = None
        self._mark = 0
        self._planned = 0
        self._before: dict[str, Any] | None = None

    def recover(self) -> None:
        """Reset a board that crashed or fell silent in the previous test, and wait until it is online.

        Raises:
            BoardError: the board did not come back.
        """
        if not self.needs_reset:
            return
        try:
            self.board.reset(wait_online=True)
        except HilError as exc:
            raise BoardError(f"the board did not come back after a reset: {exc}") from exc
        self.needs_reset = False

    def before(self, policy: GuardPolicy, slice_path: Path | None = None) -> None:
        """Start guarding a test: mark the console, count planned restarts, read the counters."""
        self._policy = policy
        self._slice_path = slice_path
        self._mark = self.board.monitor.mark()
        self._planned = self.board.planned_restarts
        self._before = self._stats()

    def after(self, error: BaseException | None = None) -> Verdict:
        """Judge the test that just ran; ``error`` is what its body raised (None when it passed)."""
        after = self._stats()  # also flushes the parser: a dump ends when the next line arrives
        monitor = self.board.monitor
        console = judge(
            monitor.events_between(self._mark),
            self.board.planned_restarts - self._planned,
            self._policy.expected_crashes,
        )
        notes = decode_crashes(console.crashes, self.decoder) if self.decoder is not None else []
        verdict = Verdict(events=[event.to_dict() for event in console.recorded], dut_silent=after is None)
        if self._slice_path is not None:
            verdict.console_slice = monitor.write_slice(self._slice_path, self._mark)
        if self._before is not None and after is not None:
            # Kept for failed tests too: they explain. The heap's change sits beside the counters so that runs on
            # different stacks compare per scenario.
            verdict.counters = {**counter_deltas(self._before, after), **heap_deltas(self._before, after)}
        if console.failed:
            verdict.crash = "\n".join([console.message(), *notes])
        if after is None or console.failed:
            self.needs_reset = True
        if self._before is not None and after is not None:
            verdict.over_budget = over_budget(verdict.counters, self._policy.budget)
        return verdict

    def _stats(self) -> dict[str, Any] | None:
        try:
            return self.board.stats()
        except (DutTimeoutError, BoardError):
            return None


def over_budget(deltas: Mapping[str, int], budget: Mapping[str, int]) -> str:
    """The counters whose delta exceeds their budget, as `name +got (budget limit)`, or ""."""
    over = [(name, deltas[name], limit) for name, limit in budget.items() if deltas.get(name, 0) > limit]
    return ", ".join(f"{name} +{got} (budget {limit})" for name, got, limit in over)


def policy_for(
    base_budget: Mapping[str, int],
    budget_overrides: Iterable[Mapping[str, int]],
    expected_crashes: Iterable[str],
) -> GuardPolicy:
    """A test's policy: the config's budget for its scenario, overridden by its markers in order."""
    budget = dict(base_budget)
    for override in budget_overrides:
        budget.update(override)
    return GuardPolicy(budget, frozenset(expected_crashes))
