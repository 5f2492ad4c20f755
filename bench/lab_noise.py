"""Measure run-to-run noise of the virtual lab's throughput and ping figures.

Builds a namespace pair joined by a veth shaped like 100BASE-TX (``gso_max_segs 1`` on both ends, tbf 100mbit
with Ethernet overhead on both egresses), then repeats a 3 s iperf3 TCP run and a 50-probe ping and prints the
coefficient of variation (stdev / mean) of each figure. The regression gate is calibrated against these numbers
(see ``bench/regress_calibration.py``).

Needs root (network namespaces). Everything it creates is removed on exit, failure or Ctrl-C.

Usage: ``python bench/lab_noise.py [--runs 10] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

PREFIX = f"hil-rs-{os.getpid() % 100000}"
NS_SERVER = f"{PREFIX}-s"
NS_CLIENT = f"{PREFIX}-c"
SERVER_IP = "10.77.0.1"
CLIENT_IP = "10.77.0.2"
TIMEOUT_S = 30


def sh(*args: str, timeout: float = TIMEOUT_S) -> str:
    """Run a command, fail loudly, return its stdout."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def in_ns(ns: str, *args: str, timeout: float = TIMEOUT_S) -> str:
    return sh("ip", "netns", "exec", ns, *args, timeout=timeout)


def build_lab() -> None:
    sh("ip", "netns", "add", NS_SERVER)
    sh("ip", "netns", "add", NS_CLIENT)
    sh("ip", "link", "add", "veth-s", "netns", NS_SERVER, "type", "veth", "peer", "name", "veth-c", "netns", NS_CLIENT)
    for ns, dev, ip in ((NS_SERVER, "veth-s", SERVER_IP), (NS_CLIENT, "veth-c", CLIENT_IP)):
        in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(ns, "ip", "link", "set", dev, "gso_max_segs", "1")
        in_ns(ns, "ip", "addr", "add", f"{ip}/24", "dev", dev)
        in_ns(ns, "ip", "link", "set", dev, "up")
        in_ns(
            ns,
            "tc",
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            "100mbit",
            "burst",
            "3076",
            "limit",
            "150000",
            "overhead",
            "24",
            "linklayer",
            "ethernet",
        )


def tear_down() -> None:
    for ns in (NS_CLIENT, NS_SERVER):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=TIMEOUT_S, check=False)


def iperf3_runs(runs: int) -> list[float]:
    # `ip netns exec` execs iperf3 in place, so this PID is the server's own.
    server = subprocess.Popen(
        ["ip", "netns", "exec", NS_SERVER, "iperf3", "-s", "-B", SERVER_IP],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return [_iperf3_client() for _ in range(runs)]
    finally:
        server.terminate()
        server.wait(timeout=TIMEOUT_S)


def _iperf3_client() -> float:
    deadline = time.monotonic() + 10
    while True:
        done = subprocess.run(
            ["ip", "netns", "exec", NS_CLIENT, "iperf3", "-c", SERVER_IP, "-t", "3", "-J"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        if done.returncode == 0:
            report = json.loads(done.stdout)
            return report["end"]["sum_received"]["bits_per_second"] / 1e6
        # The server may not be listening yet right after start: retry until the deadline.
        if time.monotonic() > deadline:
            raise RuntimeError(f"iperf3 client failed: {done.stdout[-400:]} {done.stderr[-400:]}")
        time.sleep(0.2)


def ping_runs(runs: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"rtt_avg_ms": [], "rtt_p50_ms": [], "rtt_p99_ms": []}
    for _ in range(runs):
        out = in_ns(NS_CLIENT, "ping", "-c", "50", "-i", "0.01", "-n", SERVER_IP)
        rtts = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", out))
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
    try:
        build_lab()
        series = {"iperf3_tcp_mbps": iperf3_runs(args.runs), **ping_runs(args.runs)}
    finally:
        tear_down()
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
