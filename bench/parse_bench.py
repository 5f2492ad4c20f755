"""Benchmark of the console parser: a large synthetic ESP-IDF log, parsed in 1 MiB chunks.

Run: ``python bench/parse_bench.py [--mb 100]``. Prints MB/s and events/s (measurements, not asserts).
The log mixes coloured log lines, HIL_STATS/HIL_EVENT lines, link flaps and, about once per MiB, a
crash (the ESP32-P4 shapes of harness.boards.virtual.crashes) followed by a reboot and a boot log.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.boards.virtual.crashes import CRASH_KINDS, crash_lines
from harness.console.events import LogParser

CHUNK = 1 << 20
SHA = "5b8e4da4121d0f52" * 4
BOOT = [
    "ESP-ROM:esp32p4-eco2-20240710",
    "Build:Jul 10 2024",
    "rst:0xc (SW_CPU_RESET),boot:0x30f (SPI_FAST_FLASH_BOOT)",
    "Core0 Saved PC:0x4ff0a3b6",
    "I (25) boot: ESP-IDF v5.5 2nd stage bootloader",
    "I (28) boot: chip revision: v1.0",
    "I (405) app_init: Project name:     hil_app",
    "I (409) app_init: App version:      0.3.1",
    f"I (419) app_init: ELF file SHA256:  {SHA[:16]}...",
    "I (424) app_init: ESP-IDF:          v5.5",
    "I (437) efuse_init: Chip rev:         v1.0",
    "I (2530) net_stack: ETH link up",
]


def _unit(index: int, target_bytes: int) -> bytes:
    """About ``target_bytes`` of console output ending in one crash and the boot that follows."""
    lines: list[str] = []
    size = 0
    ms = 1000
    count = 0
    while size < target_bytes:
        ms += 7
        count += 1
        line = f"\x1b[0;32mI ({ms}) net_stack: rx frame len={ms % 1514} q={ms % 30}\x1b[0m"
        if ms % 97 == 0:
            stats = {"proto": 1, "trigger": "period", "iface": "eth", "rx_frames": ms, "tx_fails": 0}
            line = f"I ({ms}) hil: HIL_STATS {json.dumps(stats, separators=(',', ':'))}"
        elif count % 5000 == 0:
            line = f"\x1b[0;33mW ({ms}) net_stack: ETH link down\x1b[0m"
        elif count % 5000 == 10:
            line = f"I ({ms}) net_stack: ETH link up"
        elif ms % 13 == 0:
            line = f"hil> D ({ms}) httpd: served /dl/{ms} in {ms % 50} ms"
        lines.append(line)
        size += len(line) + 2
    lines += crash_lines(CRASH_KINDS[index % len(CRASH_KINDS)], ms=ms, elf_sha256=SHA)
    lines += BOOT
    return ("\r\n".join(lines) + "\r\n").encode()


def build_log(megabytes: int) -> bytes:
    """A synthetic log of at least ``megabytes`` MiB (distinct crash kinds cycled through)."""
    units = [_unit(index, CHUNK) for index in range(len(CRASH_KINDS))]
    parts: list[bytes] = []
    total = 0
    index = 0
    while total < megabytes * CHUNK:
        parts.append(units[index % len(units)])
        total += len(parts[-1])
        index += 1
    return b"".join(parts)


def run(megabytes: int, log_events: bool = True, data: bytes | None = None) -> dict:
    """Parse a synthetic log of ``megabytes`` MiB; return the measured figures."""
    data = data if data is not None else build_log(megabytes)
    parser = LogParser(log_events)
    kinds: Counter[str] = Counter()
    view = memoryview(data)
    start = time.perf_counter()
    for offset in range(0, len(data), CHUNK):
        for event in parser.feed(bytes(view[offset : offset + CHUNK])):
            kinds[event.kind] += 1
    for event in parser.finish():
        kinds[event.kind] += 1
    elapsed = time.perf_counter() - start
    events = sum(kinds.values())
    return {
        "bytes": len(data),
        "seconds": elapsed,
        "mb_per_s": len(data) / 1e6 / elapsed,
        "events": events,
        "events_per_s": events / elapsed,
        "crashes": sum(kinds[kind] for kind in ("panic", "abort", "assert", "wdt", "stack_overflow", "rust_panic")),
        "kinds": dict(kinds),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the synthetic log in MiB (default 100)")
    args = parser.parse_args(argv)
    data = build_log(args.mb)
    for log_events in (True, False):
        figures = run(args.mb, log_events, data)
        mode = "with log events   " if log_events else "without log events"
        print(
            f"{mode}: parsed {figures['bytes'] / 1e6:.1f} MB in {figures['seconds']:.2f} s: "
            f"{figures['mb_per_s']:.1f} MB/s, {figures['events_per_s']:.0f} events/s "
            f"({figures['events']} events, {figures['crashes']} crash events)"
        )
        print("  events by kind:", json.dumps(figures["kinds"], sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
