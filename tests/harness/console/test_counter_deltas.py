"""HIL_STATS counter deltas over a test, with and without a reboot in between."""

from __future__ import annotations

from harness.console.protocol import counter_deltas


def test_deltas_subtract_within_one_boot() -> None:
    before = {"rx_frames": 10, "frame_pool_drops": 1, "uptime_ms": 1000}
    after = {"rx_frames": 25, "frame_pool_drops": 1, "uptime_ms": 5000}
    assert counter_deltas(before, after) == {"rx_frames": 15, "frame_pool_drops": 0}


def test_deltas_after_a_reboot_count_from_the_new_boot() -> None:
    before = {"rx_frames": 900, "frame_pool_drops": 3, "uptime_ms": 90000}
    after = {"rx_frames": 40, "frame_pool_drops": 0, "uptime_ms": 1200}
    assert counter_deltas(before, after) == {"rx_frames": 40, "frame_pool_drops": 0}
