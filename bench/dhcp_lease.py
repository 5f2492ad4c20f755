"""Measure DISCOVER -> ACK on the lab's DHCP server for the virtual board's client (smoltcp's DHCPv4 socket in the
native firmware) and busybox udhcpc (the linux stack's client).

Usage (root): python bench/dhcp_lease.py [--rounds 20]
Prints the median and maximum per client; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.boards.virtual import stackbuild  # noqa: E402
from harness.lab.dhcp import DhcpServer  # noqa: E402
from harness.lab.veth import VethLab  # noqa: E402
from harness.services_program import ServicesProgram  # noqa: E402


def _virtual_client_round(lab: VethLab, server: DhcpServer) -> float:
    since = time.monotonic()
    binary = stackbuild.build_firmware("smoltcp")
    with ServicesProgram(["--udp-echo", "0"], binary=binary, certs=False, netns=lab.dut.name) as firmware:
        firmware.wait_event("got_ip", timeout=10)
        return server.lease_time_s(since=since, timeout=10)


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
            rounds = (("smoltcp (virtual board)", _virtual_client_round), ("busybox udhcpc", _udhcpc_round))
            for name, one_round in rounds:
                ms = [one_round(lab, server) * 1000 for _ in range(args.rounds)]
                print(
                    f"{name:22s} DISCOVER->ACK over {args.rounds} leases: "
                    f"median {statistics.median(ms):.2f} ms, min {min(ms):.2f} ms, max {max(ms):.2f} ms"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
