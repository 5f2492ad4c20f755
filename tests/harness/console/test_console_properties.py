"""Property tests: the parser never raises, and chunking or truncation never changes or loses whole events."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.console.events import Event, LogParser, parse_bytes

SAMPLES = Path(__file__).parent / "samples"
ALL_SAMPLES = b"".join(path.read_bytes() for path in sorted(SAMPLES.glob("*.log")))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_dicts(events: list[Event]) -> list[dict]:
    return [event.to_dict() for event in events]


def parse_in_chunks(data: bytes, cuts: list[int]) -> list[Event]:
    parser = LogParser()
    events: list[Event] = []
    start = 0
    for cut in sorted(set(cuts)):
        events += parser.feed(data[start:cut])
        start = cut
    events += parser.feed(data[start:])
    return events + parser.finish()


# Bytes that look like console output: fragments of real lines mixed with noise.
FRAGMENTS = [line + ending for line in ALL_SAMPLES.splitlines()[::3] for ending in (b"\r\n", b"\n")] + [
    b"\x1b[0;31m",
    b"\x1b[0m",
    "\u241b[0;32m".encode(),
    b"hil> ",
    b"\r",
    b"\xff\xfe",
    b"\x00",
    b"(",
    b": 0x",
]


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    events = parse_bytes(data)
    assert all(event.lineno >= 1 for event in events)


@SETTINGS
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60))
def test_console_like_noise_never_raises(parts: list[bytes]) -> None:
    parse_bytes(b"".join(parts))


@SETTINGS
@given(st.lists(st.integers(min_value=0, max_value=len(ALL_SAMPLES)), max_size=40))
def test_random_splitting_yields_the_same_events(cuts: list[int]) -> None:
    assert as_dicts(parse_in_chunks(ALL_SAMPLES, cuts)) == as_dicts(parse_bytes(ALL_SAMPLES))


WHOLE = parse_bytes(ALL_SAMPLES)


@SETTINGS
@given(st.integers(min_value=0, max_value=len(ALL_SAMPLES)))
def test_random_truncation_keeps_every_event_that_was_whole(cut: int) -> None:
    truncated = ALL_SAMPLES[:cut]
    events = parse_bytes(truncated)
    complete_lines = truncated.count(b"\n")
    present = {(event.kind, event.lineno) for event in events}
    for event in WHOLE:
        if event.end_lineno <= complete_lines:
            assert (event.kind, event.lineno) in present, f"lost {event.to_dict()} when cut at byte {cut}"


def typed(events: list[Event]) -> list[dict]:
    return [event.to_dict() for event in events if event.kind != "log"]


def test_fast_mode_without_log_events_gives_the_same_typed_events() -> None:
    fast = parse_bytes(ALL_SAMPLES, log_events=False)
    assert all(event.kind != "log" for event in fast)
    assert as_dicts(fast) == typed(WHOLE)


@SETTINGS
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60), st.lists(st.integers(min_value=0, max_value=4000)))
def test_fast_mode_matches_on_noise_and_any_split(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    parser = LogParser(log_events=False)
    events: list[Event] = []
    start = 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}):
        events += parser.feed(data[start:cut])
        start = cut
    events += parser.feed(data[start:]) + parser.finish()
    assert as_dicts(events) == typed(parse_bytes(data))
