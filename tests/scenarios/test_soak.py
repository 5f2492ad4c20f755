"""Soak (opt-in: `--soak`, length `--soak-minutes`): mixed traffic for N minutes, tracked over time.

Each round downloads over HTTP and sends UDP echoes (port 7); every sample period the DUT's HIL_STATS
(heap free and minimum-free watermark, drops) and the period's UDP echo latency are stored. The series
goes to `<artifacts>/soak_series.json`; summary metrics go into the results.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from typing import Any

import pytest

from harness.boards.board import Board
from harness.lab.traffic import http_download, percentile

UDP_ECHO_PORT = 7
ECHOES_PER_ROUND = 20
DOWNLOAD_BYTES = 1_000_000
SAMPLES_WANTED = 30
MIN_SAMPLE_PERIOD_S = 5.0
DROP_COUNTERS = ("rx_drops", "frame_pool_drops", "tx_fails")


def _udp_echoes(ip: str, count: int, timeout: float = 1.0) -> tuple[int, list[float]]:
    """Send ``count`` datagrams to the DUT's UDP echo one after another; returns (sent, RTTs in ms)."""
    rtts = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(count):
            data = os.urandom(64)
            started = time.perf_counter()
            sock.sendto(data, (ip, UDP_ECHO_PORT))
            while (remaining := started + timeout - time.perf_counter()) > 0:
                if not select.select([sock], [], [], remaining)[0]:
                    break
                if sock.recv(2048) == data:
                    rtts.append((time.perf_counter() - started) * 1000)
                    break
    return count, rtts


@pytest.mark.soak
def test_soak(board: Board, lab: Any, dut_ip: str, hil_config: Any, hil_session: Any, metrics: Any,
              request: Any) -> None:  # fmt: skip
    """Mixed traffic for --soak-minutes; the heap watermark stays above its floor, no echo is lost."""
    minutes = request.config.option.soak_minutes
    duration_s = minutes * 60
    period_s = max(MIN_SAMPLE_PERIOD_S, duration_s / SAMPLES_WANTED)
    thresholds = hil_config.thresholds
    first = board.stats()
    series: list[dict[str, Any]] = []
    started = time.monotonic()
    next_sample = started + period_s
    window_rtts: list[float] = []
    window_sent = total_sent = total_answered = 0
    downloaded = 0
    while True:
        transfer = http_download(lab.host, dut_ip, DOWNLOAD_BYTES)
        downloaded += transfer.nbytes
        sent, rtts = lab.host.call(_udp_echoes, dut_ip, ECHOES_PER_ROUND, timeout=60)
        window_sent += sent
        window_rtts += rtts
        now = time.monotonic()
        if now < next_sample:
            continue
        stats = board.stats()
        series.append({
            "t_s": round(now - started, 3),
            "heap_free": stats["heap_free"],
            "heap_min_free": stats["heap_min_free"],
            **{name: stats[name] - first[name] for name in DROP_COUNTERS},
            "udp_sent": window_sent,
            "udp_lost": window_sent - len(window_rtts),
            "udp_rtt_p50_ms": round(percentile(window_rtts, 50), 4) if window_rtts else None,
            "udp_rtt_p99_ms": round(percentile(window_rtts, 99), 4) if window_rtts else None,
            "http_mbps": round(transfer.mbps, 2),
        })  # fmt: skip
        total_sent += window_sent
        total_answered += len(window_rtts)
        window_rtts, window_sent = [], 0
        next_sample += period_s
        if now - started >= duration_s:
            break

    path = hil_session.record.artifacts_dir / "soak_series.json"
    path.write_text(json.dumps({"minutes": minutes, "period_s": period_s, "samples": series}, indent=1))
    last = series[-1]
    loss_pct = 100 * (total_sent - total_answered) / total_sent
    p99s = [sample["udp_rtt_p99_ms"] for sample in series if sample["udp_rtt_p99_ms"] is not None]
    metrics.record("soak_samples", len(series), "count", "higher")
    metrics.record("soak_heap_min_free_bytes", last["heap_min_free"], "B", "higher")
    metrics.record("soak_heap_free_change_bytes", last["heap_free"] - series[0]["heap_free"], "B", "higher")
    metrics.record("soak_udp_loss_pct", loss_pct, "%", "lower")
    if p99s:
        metrics.record("soak_udp_rtt_p99_max_ms", max(p99s), "ms", "lower")
    for name in DROP_COUNTERS:
        metrics.record(f"soak_{name}", last[name], "count", "lower")
    metrics.record("soak_http_bytes", downloaded, "B", "higher")
    print(f"soak series: {path}")

    floor = thresholds.soak_heap_min_free_bytes
    low = [sample for sample in series if sample["heap_min_free"] < floor]
    assert not low, f"heap minimum-free watermark fell to {low[0]['heap_min_free']} B at {low[0]['t_s']} s " \
                    f"(floor {floor} B; series in {path})"  # fmt: skip
    assert loss_pct <= thresholds.soak_loss_max_pct, (
        f"{total_sent - total_answered} of {total_sent} UDP echoes lost during the soak (series in {path})"
    )
