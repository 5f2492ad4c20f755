"""Measure DISCOVER -> ACK on the lab's DHCP server for the virtual board's client and busybox udhcpc.

Usage (root): python bench/dhcp_lease.py [--rounds 20]
Prints the median and maximum per client; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.lab.dhcp import DhcpServer  # noqa: E402
from harness.lab.veth import VethLab  # noqa: E402


def _virtual_client_round(lab: VethLab, server: DhcpServer) -> float:
    since = time.monotonic()
    argv = [sys.executable, "-m", "harness.boards.virtual.dhcp_client", "--ifname", lab.dut_if]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    client = lab.spawn("dhcp-client", argv, ns=lab.dut, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert client.popen.stdout is not None
        client.popen.stdout.readline()  # got_ip
        return server.lease_time_s(since=since, timeout=10)
    finally:
        client.stop()
        lab.processes.remove(client)


def _udhcpc_round(lab: VethLab, server: DhcpServer) -> float:
    since = time.monotonic()
    lab.dut.run("busybox", "udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1", "-i", lab.dut_if, "-s", "/bin/true")
    return server.lease_time_s(since=since, timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with VethLab() as lab:
        lab.dut.ip("link", "set", lab.dut_if, "up")
        with DhcpServer(lab.host, lab.host_if, lab.addressing) as server:
            for name, one_round in (("virtual board client", _virtual_client_round), ("busybox udhcpc", _udhcpc_round)):
                ms = [one_round(lab, server) * 1000 for _ in range(args.rounds)]
                print(
                    f"{name:22s} DISCOVER->ACK over {args.rounds} leases: "
                    f"median {statistics.median(ms):.2f} ms, min {min(ms):.2f} ms, max {max(ms):.2f} ms"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
