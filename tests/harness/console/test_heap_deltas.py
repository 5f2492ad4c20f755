"""The heap's change over a test, recorded beside the counter deltas (per-scenario heap of each stack)."""

from __future__ import annotations

from harness.console.protocol import heap_deltas


def test_heap_change_within_one_boot() -> None:
    before = {"heap_free": 300_000, "heap_min_free": 280_000, "uptime_ms": 1000, "rx_frames": 3}
    after = {"heap_free": 299_488, "heap_min_free": 214_000, "uptime_ms": 9000, "rx_frames": 90}
    assert heap_deltas(before, after) == {"heap_free": -512, "heap_min_free": -66_000}


def test_no_heap_change_across_a_reboot() -> None:
    before = {"heap_free": 300_000, "heap_min_free": 280_000, "uptime_ms": 90_000}
    after = {"heap_free": 310_000, "heap_min_free": 305_000, "uptime_ms": 1_200}
    assert heap_deltas(before, after) == {}


def test_firmware_without_heap_fields_gives_none() -> None:
    assert heap_deltas({"uptime_ms": 1}, {"uptime_ms": 2}) == {}
