"""Throughput: HTTP download/upload and iperf3 TCP both ways, against the link's goodput ceiling."""

from __future__ import annotations

import pytest

from harness.boards.board import Board
from harness.lab.traffic import CpuMeter, http_download, http_upload, iperf3


@pytest.fixture
def ceiling(lab) -> float:
    """TCP goodput ceiling of the link (Linux peers use TCP timestamps)."""
    return lab.link.tcp_goodput_ceiling_mbps(timestamps=True)


def _check_floor(hil_config, name: str, mbps: float, ceiling: float) -> None:
    floor = hil_config.throughput_floor_mbps(ceiling)
    assert mbps >= floor, f"{name} {mbps:.2f} Mbit/s is below the floor {floor:.2f} Mbit/s"


def test_http_download(board: Board, lab, dut_ip, hil_config, metrics, ceiling, request) -> None:
    """GET /dl/<n> like `curl http://<ip>/dl/200000000` in the blog's measurement."""
    nbytes = request.config.option.dl_bytes
    pids = [board.app_pid()] if board.kind == "virtual" else []
    with CpuMeter(pids) as cpu:
        transfer = http_download(lab.host, dut_ip, nbytes)
    metrics.record("http_download_mbps", transfer.mbps, "Mbit/s", "higher", ceiling=ceiling)
    metrics.record("http_download_pct_of_ceiling", 100 * transfer.mbps / ceiling, "%", "higher")
    metrics.record("harness_client_cpu_pct", 100 * transfer.client_cpu_s / transfer.seconds, "%", "lower")
    if board.kind == "virtual":
        metrics.record("virtual_firmware_cpu_pct", sum(cpu.percent.values()), "%", "lower")
    _check_floor(hil_config, "HTTP download", transfer.mbps, ceiling)


def test_http_upload(board: Board, lab, dut_ip, hil_config, metrics, ceiling, request) -> None:
    """POST /ul with the same byte count."""
    transfer = http_upload(lab.host, dut_ip, request.config.option.dl_bytes)
    metrics.record("http_upload_mbps", transfer.mbps, "Mbit/s", "higher", ceiling=ceiling)
    metrics.record("http_upload_pct_of_ceiling", 100 * transfer.mbps / ceiling, "%", "higher")
    _check_floor(hil_config, "HTTP upload", transfer.mbps, ceiling)


@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_iperf3_tcp(board: Board, lab, dut_ip, hil_config, metrics, ceiling, request, direction: str) -> None:
    """iperf3 TCP: rx is host -> DUT, tx is DUT -> host (the client's -R)."""
    result = iperf3(lab.host, dut_ip, seconds=request.config.option.iperf_seconds, reverse=direction == "tx")
    name = f"iperf3_tcp_{direction}_mbps"
    metrics.record(name, result.mbps, "Mbit/s", "higher", ceiling=ceiling)
    metrics.record(f"iperf3_tcp_{direction}_pct_of_ceiling", 100 * result.mbps / ceiling, "%", "higher")
    if result.retransmits is not None:
        metrics.record(f"iperf3_tcp_{direction}_retransmits", result.retransmits, "segments", "lower")
    _check_floor(hil_config, f"iperf3 TCP {direction}", result.mbps, ceiling)
