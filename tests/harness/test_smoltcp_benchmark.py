"""Benchmark (opt-in: marker `benchmark`, run with --benchmarks or HIL_BENCHMARKS=1): iperf3 TCP both ways and an
HTTP download through the native firmware on the lab's 100BASE-TX-shaped cable, smoltcp flavour and linux
flavour side by side in the same run (both with the board's sizes), each against the ceiling of the TCP options
its connection actually negotiated (read from the SYN/SYN-ACK), with the firmware's CPU share and, for what the
DUT sent, the share of segments that repeated data the peer had already acknowledged. The smoltcp flavour runs
twice: with the board's TX ring (30 frames, back-pressure) and with a TX queue as deep as the kernel's (the
virtual board before it had the ring). Prints and records; asserts nothing about speed (docs/smoltcp.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from harness.boards.virtual import stackbuild
from harness.boards.virtual.firmware import board_options
from harness.errors import MissingToolError
from harness.lab.base import LinkProfile
from harness.lab.dhcp import DhcpServer
from harness.lab.veth import VethLab
from harness.processes import cpu_seconds as process_cpu_seconds
from harness.services_program import ServicesProgram

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.skipif(
        shutil.which("iperf3") is None or shutil.which("tcpdump") is None,
        reason="needs iperf3 and tcpdump (ci/install.sh)",
    ),
]

SECONDS = 10
HTTP_BYTES = 100_000_000
MAC = "02:00:00:12:34:56"
# A TX queue as deep as the kernel's was before the ring (1 MiB of AF_PACKET send buffer: 455 full frames).
KERNEL_DEEP_QUEUE = ["--tx-ring", "455"]
_SEGMENT = re.compile(r"IP (\S+) > (\S+): Flags \[([^\]]*)\](?:, seq (\d+):(\d+))?(?:, ack (\d+))?")
_OPTIONS = re.compile(r"options \[(.*?)\]")


@pytest.fixture(autouse=True)
def _opt_in(request: pytest.FixtureRequest) -> None:
    if not (request.config.getoption("--benchmarks", default=False) or os.environ.get("HIL_BENCHMARKS") == "1"):
        pytest.skip("benchmark: run with --benchmarks or HIL_BENCHMARKS=1")
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    try:
        stackbuild.find_cargo()
    except MissingToolError as exc:
        pytest.skip(str(exc))


@dataclass
class Handshake:
    """What one TCP connection negotiated (from its SYN and SYN-ACK)."""

    mss: int
    timestamps: bool
    window_scale: bool
    sack: bool

    def ceiling_mbps(self, link: LinkProfile) -> float:
        """Highest goodput with these options: full segments back to back on the shaped wire."""
        payload = self.mss - (12 if self.timestamps else 0)
        return link.rate_mbit * payload / link.frame_wire_bytes(payload + 40 + (12 if self.timestamps else 0))


def handshake(capture: str, port: int) -> Handshake:
    """The options of the data connection to ``port`` (the last SYN/SYN-ACK pair to it in the capture)."""
    syn = synack = ""
    for line in capture.splitlines():
        match = _SEGMENT.search(line)
        options = _OPTIONS.search(line)
        if match is None or "S" not in match.group(3) or options is None:
            continue
        if match.group(1).endswith(f".{port}"):
            syn = options.group(1)  # the client's SYN, from its local port
        elif match.group(2).endswith(f".{port}"):
            synack = options.group(1)
    mss = min(int(re.search(r"mss (\d+)", options).group(1)) for options in (syn, synack))  # type: ignore[union-attr]
    both = lambda word: word in syn and word in synack  # noqa: E731
    return Handshake(mss, both("TS val"), both("wscale"), both("sackOK"))


_WINDOW = re.compile(r", win (\d+),")


def small_windows(capture: str, port: int, mss: int) -> int:
    """ACKs the DUT sent on the connection to ``port`` offering less than one segment of window (it has no
    window scaling: the field is bytes): the receiver, not the wire, held the sender back."""
    count = 0
    for line in capture.splitlines():
        match = _SEGMENT.search(line)
        window = _WINDOW.search(line)
        if match and window and match.group(2).endswith(f".{port}") and int(window.group(1)) < mss:
            count += 1
    return count


def repeated_share(capture: str, port: int) -> tuple[int, int]:
    """Data segments the DUT sent on the connection to ``port``, and how many of them only repeated data the
    client had already acknowledged (retransmissions the client did not need)."""
    acked = 0
    sent = repeated = 0
    for line in capture.splitlines():
        match = _SEGMENT.search(line)
        if match is None:
            continue
        source, destination, _, start, end, ack = match.groups()
        if destination.endswith(f".{port}") and start is not None and end is not None and int(end) > int(start):
            sent += 1
            repeated += int(end) <= acked
        elif source.endswith(f".{port}") and ack is not None:
            acked = max(acked, int(ack))
    return sent, repeated


@dataclass
class Row:
    flavour: str
    direction: str
    mbps: float
    ceiling_mbps: float
    percent_of_ceiling: float
    mss: int
    timestamps: bool
    firmware_cpu_percent: float
    dut_segments: int
    dut_repeated_acked_segments: int
    dut_acks_below_one_segment_window: int


@pytest.fixture
def lab() -> Iterator[VethLab]:
    with VethLab() as lab, DhcpServer(lab.host, lab.host_if, lab.addressing):
        yield lab


def _load(lab: VethLab, dut_ip: str, kind: str) -> tuple[float, int]:
    """Run one transfer; its goodput (Mbit/s) and the client's local port."""
    if kind == "http":
        url = f"http://{dut_ip}/dl/{HTTP_BYTES}"
        out = lab.host.run("curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{local_port}", url,
                           timeout=SECONDS + 120)  # fmt: skip
        speed, port = out.split()
        return float(speed) * 8 / 1e6, int(port)
    command = ["iperf3", "-c", dut_ip, "-t", str(SECONDS), "--json", *(["-R"] if kind == "download" else [])]
    report = json.loads(lab.host.run(*command, timeout=SECONDS + 60))
    assert "error" not in report, report.get("error")
    return report["end"]["sum_received"]["bits_per_second"] / 1e6, report["start"]["connected"][0]["local_port"]


def measure(lab: VethLab, firmware: ServicesProgram, flavour: str, kind: str, dut_ip: str, pcap: Path) -> Row:
    dump = subprocess.Popen(lab.host.argv("tcpdump", "-i", lab.host_if, "-s", "96", "-w", str(pcap), "tcp"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.5)  # tcpdump has no ready signal; it must be capturing before the SYN goes out
        cpu_before, wall_before = process_cpu_seconds(firmware.pid), time.monotonic()
        mbps, port = _load(lab, dut_ip, kind)
        cpu = (process_cpu_seconds(firmware.pid) - cpu_before) / (time.monotonic() - wall_before) * 100
    finally:
        dump.terminate()
        dump.wait(timeout=30)
    capture = subprocess.run(["tcpdump", "-r", str(pcap), "-nn", "-S"], capture_output=True, text=True,
                             timeout=120, check=True).stdout  # fmt: skip
    options = handshake(capture, port)
    ceiling = options.ceiling_mbps(lab.link)
    sending = kind in ("download", "http")
    sent, repeated = repeated_share(capture, port) if sending else (0, 0)
    closed = 0 if sending or not flavour.startswith("smoltcp") else small_windows(capture, port, options.mss)
    percent = round(100 * mbps / ceiling, 1)
    return Row(flavour, kind, round(mbps, 2), round(ceiling, 2), percent, options.mss, options.timestamps,
               round(cpu, 1), sent, repeated, closed)  # fmt: skip


def _run(lab: VethLab, tmp_path: Path, flavour: str, label: str, extra: list[str]) -> tuple[list[Row], dict]:
    options = [*(board_options() if flavour == "smoltcp" else []), *extra]
    binary = stackbuild.build_firmware(flavour)
    args = ["--iperf3", "5201", "--http", "80", *options]
    with ServicesProgram(args, binary=binary, certs=False, mac=MAC, netns=lab.dut.name) as firmware:
        dut_ip = firmware.wait_event("got_ip", timeout=20)["ip"]
        before = firmware.stats()["net"]
        rows = [measure(lab, firmware, label, kind, dut_ip, tmp_path / f"{label}-{kind}.pcap")
                for kind in ("upload", "download", "http")]  # fmt: skip
        after = firmware.stats()["net"]
    counters = ("frame_pool_drops", "tx_fails", "rx_drops", "tx_ring_full")
    return rows, {name: after[name] - before[name] for name in counters if name in after}


def test_iperf3_and_http_smoltcp_beside_linux(
    lab: VethLab, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    rows: list[Row] = []
    counters: dict[str, dict] = {}
    for flavour, label, extra in (
        ("smoltcp", "smoltcp", []),
        ("smoltcp", "smoltcp-deep-queue", KERNEL_DEEP_QUEUE),
        ("linux", "linux", []),
    ):
        more, counters[label] = _run(lab, tmp_path, flavour, label, extra)
        rows += more
    print(f"\n{SECONDS} s iperf3 TCP each way and a {HTTP_BYTES // 1_000_000} MB HTTP download, 100BASE-TX-shaped "
          "veth (tbf 100mbit, overhead 24, gso_max_segs 1):")  # fmt: skip
    print(f"{'flavour':19} {'transfer':9} {'Mbit/s':>7} {'ceiling':>8} {'%':>6} {'MSS':>5} {'TS':>3} {'CPU %':>6}"
          f" {'DUT segs':>9} {'repeated':>9} {'win<MSS':>8}")  # fmt: skip
    for row in rows:
        print(f"{row.flavour:19} {row.direction:9} {row.mbps:7.2f} {row.ceiling_mbps:8.2f}"
              f" {row.percent_of_ceiling:6.1f} {row.mss:5d} {'y' if row.timestamps else 'n':>3}"
              f" {row.firmware_cpu_percent:6.1f}"
              f" {row.dut_segments:9d} {row.dut_repeated_acked_segments:9d}"
              f" {row.dut_acks_below_one_segment_window:8d}")  # fmt: skip
    for label, deltas in counters.items():
        print(f"{label} runtime counters over its transfers: {deltas}")
    record_property("smoltcp_benchmark", json.dumps({"rows": [asdict(r) for r in rows], "counters": counters}))
