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
    last_crash: Event | None = None
    for event in events:
        if event.kind in RECORDED_KINDS:
            verdict.recorded.append(event)
        if event.kind == "coredump" and last_crash is not None and last_crash.coredump is None:
            last_crash.coredump = event  # decoded together with the crash it belongs to
        if event.kind in CRASH_EVENT_KINDS:
            last_crash = event
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
    """Attach decoded frames to each crash event (``decoded``, and ``decoded_by``: ``gdb``, ``addr2line`` or
    ``esp-coredump``); return notes to show the user.

    A crash followed by a core dump printed to the UART (linked by :func:`judge`) also gets the core dump's
    backtrace of the crashed task (``coredump_decoded``). The decoder refuses, and says why, when it has no
    ELF, no tool, or an ELF whose SHA256 is not the one the device printed.
    """
    notes: list[str] = []
    for event in crashes:
        fields = event.fields
        if not (fields.get("pc") or fields.get("ra") or fields.get("backtrace")):
            continue
        result = decoder.decode_event(event)
        if result.decoded:
            fields["decoded"] = [vars(frame) for frame in result.frames]
            fields["decoded_by"] = result.method
        if result.note:
            notes.append(result.note)
        dump = event.coredump
        if dump is not None and dump.payload:
            core = decoder.decode_coredump(dump.payload, "b64")
            if core.decoded:
                fields["coredump_decoded"] = [vars(frame) for frame in core.frames]
            if core.note:
                notes.append(core.note)
    return notes
