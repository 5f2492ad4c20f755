"""The HIL machine lines of firmware/PROTOCOL.md: `<L> (<ms>) hil: HIL_<KEYWORD> {json}`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
PROMPT = "hil> "
KEYWORDS = ("HIL_HELLO", "HIL_EVENT", "HIL_STATS", "HIL_RESULT")

# Counters of HIL_STATS that only grow; deltas over a test are meaningful for these.
COUNTER_FIELDS = (
    "rx_frames",
    "rx_bytes",
    "rx_drops",
    "tx_frames",
    "tx_bytes",
    "tx_fails",
    "link_ups",
    "link_downs",
    "frame_pool_drops",
)
# Gauges of HIL_STATS: a delta is meaningless, the value at a point in time is reported.
GAUGE_FIELDS = ("active_sockets", "heap_free", "heap_min_free", "uptime_ms")
# ...except the heap's: its change over a test is recorded beside the counter deltas (`heap_deltas`).
HEAP_FIELDS = ("heap_free", "heap_min_free")

_MACHINE_LINE = re.compile(r"(?P<level>[EWIDV]) \((?P<ms>\d+)\) hil: (?P<keyword>HIL_[A-Z]+) (?P<body>\{.*\})\s*$")


@dataclass(frozen=True)
class MachineLine:
    """One decoded HIL_* line."""

    keyword: str
    level: str
    ms: int
    fields: dict[str, Any] = field(default_factory=dict)


def parse_machine_line(text: str) -> MachineLine | None:
    """Decode a HIL_* line; return None for anything else (including malformed JSON).

    Args:
        text: one console line with colour codes and line endings already removed. Text before
            the log level (a prompt the line was glued to) is ignored.
    """
    start = text.find(" hil: HIL_")
    if start < 0:
        return None
    match = _MACHINE_LINE.search(text, max(0, start - 24))
    if not match:
        return None
    try:
        fields = json.loads(match["body"])
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    return MachineLine(match["keyword"], match["level"], int(match["ms"]), fields)


def format_machine_line(keyword: str, ms: int, fields: dict[str, Any], level: str = "I") -> str:
    """Encode a HIL_* line (without line ending), adding the protocol version."""
    body = {"proto": PROTOCOL_VERSION, **fields}
    return f"{level} ({ms}) hil: {keyword} {json.dumps(body, separators=(',', ':'))}"


def split_command(line: str) -> list[str]:
    """Split a console command line into words, as the firmware does."""
    return line.strip().split()


def counter_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Differences of the monotonic HIL_STATS counters between two snapshots.

    The firmware's counters start again at zero on every boot: when the DUT rebooted in between
    (its uptime went down), the delta is what it counted since that boot.
    """
    rebooted = _rebooted(before, after)
    return {
        name: int(after[name]) - (0 if rebooted else int(before[name]))
        for name in COUNTER_FIELDS
        if isinstance(before.get(name), int) and isinstance(after.get(name), int)
    }


def heap_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """How the heap gauges of HIL_STATS moved between two snapshots (bytes; negative: less free).

    ``heap_free``: what the test left allocated; ``heap_min_free``: how far it pushed the low-water mark
    below every earlier one. Nothing when the DUT rebooted in between: its heap started again.
    """
    if _rebooted(before, after):
        return {}
    return {
        name: int(after[name]) - int(before[name])
        for name in HEAP_FIELDS
        if isinstance(before.get(name), int) and isinstance(after.get(name), int)
    }


def _rebooted(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return (
        isinstance(before.get("uptime_ms"), int)
        and isinstance(after.get("uptime_ms"), int)
        and (after["uptime_ms"] < before["uptime_ms"])
    )
