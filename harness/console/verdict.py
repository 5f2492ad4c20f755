"""What the console says about one test: crashes and resets nobody asked for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.console.decode import BacktraceDecoder
from harness.console.events import CRASH_EVENT_KINDS, Event
from harness.console.summary import crash_summary

# Events recorded with a test in the results file (plain logs and link/IP chatter are not).
RECORDED_KINDS = frozenset({*CRASH_EVENT_KINDS, "reset", "reboot", "coredump"})


@dataclass
class ConsoleVerdict:
    """Crash and reset findings of a console slice.

    Attributes:
        crashes: crash events the test did not declare it expects.
        unexpected_resets: reset events not explained by a planned restart or a reported crash.
        recorded: the events worth storing with the test.
    """

    crashes: list[Event] = field(default_factory=list)
    unexpected_resets: list[Event] = field(default_factory=list)
    recorded: list[Event] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether the test must fail."""
        return bool(self.crashes or self.unexpected_resets)

    def message(self) -> str:
        """One paragraph per finding, for the test's failure message."""
        parts = [f"DUT crashed: {crash_summary(event)}" for event in self.crashes]
        parts += [f"DUT reset unexpectedly: {crash_summary(event)}" for event in self.unexpected_resets]
        return "\n".join(parts)


def judge(events: Iterable[Event], planned_restarts: int, expected_kinds: Iterable[str] = ()) -> ConsoleVerdict:
    """Judge a test's console events.

    Args:
        events: the typed events of the test's console slice, in order.
        planned_restarts: how many restarts the harness itself caused during the test.
        expected_kinds: crash kinds the test declared it expects (`@pytest.mark.expect_crash`).
    """
    expected = set(expected_kinds)
    verdict = ConsoleVerdict()
    crash_pending = False
    explained = planned_restarts
    for event in events:
        if event.kind in RECORDED_KINDS:
            verdict.recorded.append(event)
        if event.kind in CRASH_EVENT_KINDS:
            crash_pending = True
            if event.kind not in expected:
                verdict.crashes.append(event)
        elif event.kind == "reset":
            if crash_pending:
                crash_pending = False  # the reboot that follows a reported crash
            elif explained > 0:
                explained -= 1
            else:
                verdict.unexpected_resets.append(event)
    return verdict


def decode_crashes(crashes: Iterable[Event], decoder: BacktraceDecoder) -> list[str]:
    """Attach function/file/line frames to each crash event's addresses; return notes to show the user.

    The decoder refuses (and says why) when it has no ELF, no addr2line, or an ELF whose SHA256 is not
    the one the device printed.
    """
    notes: list[str] = []
    for event in crashes:
        fields = event.fields
        addresses = [a for a in (fields.get("pc"), fields.get("ra"), *(fields.get("backtrace") or [])) if a]
        if not addresses:
            continue
        result = decoder.decode([str(a) for a in addresses], fields.get("elf_sha256"))
        if result.decoded:
            fields["decoded"] = [vars(frame) for frame in result.frames]
        if result.note:
            notes.append(result.note)
    return notes
