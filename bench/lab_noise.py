"""Measure run-to-run noise of the virtual lab's throughput and ping figures.

Builds the lab (``harness.lab.veth.VethLab``: two namespaces joined by the veth shaped like 100BASE-TX), runs
``iperf3 -s`` at a static address on its DUT end, then repeats a 3 s iperf3 TCP run and a 50-probe ping and prints the
coefficient of variation (stdev / mean) of each figure. The regression gate is calibrated against these numbers
(see ``bench/regress_calibration.py``).

Needs root (network namespaces). Everything it creates is removed on exit, failure or Ctrl-C.

Usage: ``python bench/lab_noise.py [--runs 10] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.errors import LabError
from harness.lab.traffic import iperf3, ping
from harness.lab.veth import VethLab

SERVER_READY_S = 10


def iperf3_runs(lab: VethLab, server_ip: str, runs: int) -> list[float]:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    lab.spawn("iperf3-server", ["iperf3", "-s", "-B", server_ip], ns=lab.dut, **quiet)
    return [_iperf3_mbps(lab, server_ip) for _ in range(runs)]


def _iperf3_mbps(lab: VethLab, server_ip: str) -> float:
    deadline = time.monotonic() + SERVER_READY_S
    while True:
        try:
            return iperf3(lab.host, server_ip, seconds=3).mbps
        except LabError:
            # The server may not be listening yet right after start: retry until the deadline.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def ping_runs(lab: VethLab, server_ip: str, runs: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"rtt_avg_ms": [], "rtt_p50_ms": [], "rtt_p99_ms": []}
    for _ in range(runs):
        rtts = sorted(ping(lab.host, server_ip, count=50, interval=0.01).rtts_ms)
        figures["rtt_avg_ms"].append(statistics.fmean(rtts))
        figures["rtt_p50_ms"].append(statistics.median(rtts))
        figures["rtt_p99_ms"].append(rtts[min(len(rtts) - 1, round(0.99 * (len(rtts) - 1)))])
    return figures


def cv_pct(values: list[float]) -> float:
    return 100 * statistics.stdev(values) / statistics.fmean(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("lab_noise: needs root for network namespaces", file=sys.stderr)
        return 2
    with VethLab() as lab:
        server_ip = lab.address_dut()
        series = {"iperf3_tcp_mbps": iperf3_runs(lab, server_ip, args.runs), **ping_runs(lab, server_ip, args.runs)}
    summary = {}
    for name, values in series.items():
        summary[name] = {
            "values": [round(v, 4) for v in values],
            "mean": statistics.fmean(values),
            "cv_pct": cv_pct(values),
        }
        print(
            f"{name:18s} mean {statistics.fmean(values):10.4f}  CV {cv_pct(values):6.3f} %  "
            f"min {min(values):.4f} max {max(values):.4f}  (n={len(values)})"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
