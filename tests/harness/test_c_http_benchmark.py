"""Benchmark (opt-in: marker `benchmark`, run with --benchmarks): the firmware's C HTTP server on the lab cable.

`hil-services --http 80 --https 443` (release build) runs in the DUT namespace of a lab whose veth is shaped like
100BASE-TX; the scenarios' own clients (`harness.lab.traffic`) download `/dl/<n>` and upload to `/ul`, and the
real `iperf3 -s` in the same namespace gives the reference for each direction. Figures are printed and recorded
as test properties; the link's goodput ceiling (TCP timestamps on) is printed beside them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from harness.lab.peers import client_context, wait_for_port
from harness.lab.traffic import http_download, http_upload, iperf3
from harness.lab.veth import VethLab
from harness.services_program import ServicesProgram
from harness.testing import needs_root

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3 (apt-get install iperf3)"),
    pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (apt-get install gcc)"),
]

NBYTES = 100_000_000
TLS_NBYTES = 40_000_000
IPERF_SECONDS = 10
REFERENCE_PORT = 5299


def https_download_mbps(ip: str, nbytes: int) -> float:
    """GET /dl/<n> over TLS (verified as hil-dut); Mbit/s from the request to the last byte."""
    with (
        socket.create_connection((ip, 443), timeout=10) as raw,
        client_context().wrap_socket(raw, server_hostname="hil-dut") as tls,
    ):
        started = time.monotonic()
        tls.sendall(f"GET /dl/{nbytes} HTTP/1.1\r\nHost: hil-dut\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += tls.recv(4096)
        received = len(data.partition(b"\r\n\r\n")[2])
        while chunk := tls.recv(256 * 1024):
            received += len(chunk)
        seconds = time.monotonic() - started
    if received != nbytes:
        raise AssertionError(f"HTTPS download ended after {received} of {nbytes} bytes")
    return nbytes * 8 / seconds / 1e6


@needs_root
def test_http_throughput_side_by_side_with_iperf3(record_property) -> None:
    if shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("needs ip and tc to build network namespaces")
    with VethLab() as lab:
        dut_ip = lab.address_dut()
        ceiling = lab.link.tcp_goodput_ceiling_mbps(timestamps=True)
        reference = lab.spawn("iperf3-reference", ["iperf3", "-s", "-p", str(REFERENCE_PORT)], ns=lab.dut,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_for_port(lab, dut_ip, REFERENCE_PORT, what="iperf3 -s")
        with ServicesProgram(["--http", "80", "--https", "443"], sanitized=False, netns=lab.dut.name):
            download = http_download(lab.host, dut_ip, NBYTES).mbps
            reference_tx = iperf3(lab.host, dut_ip, seconds=IPERF_SECONDS, reverse=True, port=REFERENCE_PORT).mbps
            upload = http_upload(lab.host, dut_ip, NBYTES).mbps
            reference_rx = iperf3(lab.host, dut_ip, seconds=IPERF_SECONDS, port=REFERENCE_PORT).mbps
            tls_download = lab.host.call(https_download_mbps, dut_ip, TLS_NBYTES, timeout=120)
        reference.stop()
    rows = [
        ("http_download", download, reference_tx, f"GET /dl/{NBYTES}", "iperf3 -c -R"),
        ("http_upload", upload, reference_rx, f"POST /ul {NBYTES} B", "iperf3 -c"),
        ("https_download", tls_download, reference_tx, f"GET /dl/{TLS_NBYTES} over TLS", "iperf3 -c -R"),
    ]
    print(f"\n100BASE-TX-shaped veth, goodput ceiling {ceiling:.2f} Mbit/s (TCP timestamps):")
    for name, ours, reference_mbps, what, reference_what in rows:
        share = 100 * ours / ceiling
        print(f"  {name:15s} {ours:6.2f} Mbit/s ({what}, {share:5.1f} % of the ceiling); iperf3 -s beside it, "
              f"{reference_what}: {reference_mbps:6.2f} Mbit/s; ratio {ours / reference_mbps:.3f}")  # fmt: skip
        record_property(f"{name}_mbps", round(ours, 2))
        record_property(f"{name}_reference_iperf3_mbps", round(reference_mbps, 2))
    record_property("goodput_ceiling_mbps", round(ceiling, 2))
