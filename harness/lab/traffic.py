"""Host-side traffic against the DUT: HTTP download/upload, ping, iperf3, and latency statistics.

Everything runs inside the lab's host namespace: Python clients on a namespace thread, external
programs (ping, iperf3) through `ip netns exec`. Every wait has a timeout.
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.errors import DutTimeoutError, LabError
from harness.lab.netns import Namespace, require_lab_namespace
from harness.processes import cpu_seconds

RECV_CHUNK = 256 * 1024


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (like numpy's default) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Transfer:
    """One measured bulk transfer."""

    nbytes: int
    seconds: float
    client_cpu_s: float = 0.0

    @property
    def mbps(self) -> float:
        """Payload rate in Mbit/s."""
        return self.nbytes * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0


def _connect(ip: str, port: int, timeout: float) -> socket.socket:
    require_lab_namespace(ip)
    try:
        sock = socket.create_connection((ip, port), timeout=timeout)
    except OSError as exc:
        raise DutTimeoutError(f"cannot connect to the DUT at {ip}:{port}: {exc}") from exc
    sock.settimeout(timeout)
    return sock


@dataclass(frozen=True)
class TcpOptions:
    """What a TCP handshake with the DUT negotiated, as the lab host's socket sees it.

    Attributes:
        mss: payload bytes of a full segment (the host's send MSS, TCP options taken off).
        timestamps: both ends agreed on the timestamps option (RFC 7323), 12 bytes of every segment.
    """

    mss: int
    timestamps: bool


_TCPI_OPT_TIMESTAMPS = 1
_TCP_INFO_BYTES = 104


def negotiated_tcp_options(ip: str, port: int = 80, timeout: float = 5.0) -> TcpOptions:
    """Open one connection to the DUT and read what its handshake negotiated (Linux TCP_INFO).

    Call it inside the lab host's namespace (`Namespace.call`).

    Raises:
        DutTimeoutError: the DUT does not accept the connection.
    """
    with _connect(ip, port, timeout) as sock:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    # struct tcp_info: 8 bytes of u8 fields (tcpi_options is the sixth), then u32 rto, ato, snd_mss.
    (snd_mss,) = struct.unpack_from("=I", info, 16)
    return TcpOptions(mss=snd_mss, timestamps=bool(info[5] & _TCPI_OPT_TIMESTAMPS))


def _read_headers(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise LabError(f"DUT closed the connection before sending HTTP headers (got {data[:80]!r})")
        data += chunk
        if len(data) > 65536:
            raise LabError("DUT sent more than 64 KiB of HTTP headers")
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError) as exc:
        raise LabError(f"DUT sent a malformed HTTP status line: {status_line!r}") from exc
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def http_download(ns: Namespace, ip: str, nbytes: int, *, port: int = 80, stall_timeout: float = 10.0) -> Transfer:
    """GET /dl/<nbytes> from the DUT and time it from the request to the last byte.

    Args:
        ns: the host-side namespace to run the client in.
        ip: the DUT's address.
        nbytes: bytes to download.
        port: HTTP port.
        stall_timeout: fail if no byte arrives for this long.
    """

    def run() -> Transfer:
        cpu0 = time.thread_time()
        with _connect(ip, port, stall_timeout) as sock:
            # Wake up per 64 KiB rather than per segment: the client must never be the bottleneck.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 65536)
            started = time.monotonic()
            sock.sendall(f"GET /dl/{nbytes} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
            status, headers, body = _read_headers(sock)
            if status != 200:
                raise LabError(f"GET /dl/{nbytes} answered HTTP {status}")
            if int(headers.get("content-length", -1)) != nbytes:
                raise LabError(f"GET /dl/{nbytes} announced Content-Length {headers.get('content-length')}")
            received = len(body)
            buffer = bytearray(RECV_CHUNK)
            while received < nbytes:
                try:
                    got = sock.recv_into(buffer)
                except TimeoutError as exc:
                    raise DutTimeoutError(
                        f"download stalled: no data for {stall_timeout:g} s after {received} of {nbytes} bytes"
                    ) from exc
                if not got:
                    raise LabError(f"DUT closed the download after {received} of {nbytes} bytes")
                received += got
            return Transfer(received, time.monotonic() - started, time.thread_time() - cpu0)

    return ns.call(run)


def http_upload(ns: Namespace, ip: str, nbytes: int, *, port: int = 80, stall_timeout: float = 10.0) -> Transfer:
    """POST /ul with ``nbytes`` of body; the time runs until the DUT's reply (it has read everything)."""

    def run() -> Transfer:
        cpu0 = time.thread_time()
        chunk = memoryview(bytes(RECV_CHUNK))
        with _connect(ip, port, stall_timeout) as sock:
            started = time.monotonic()
            sock.sendall(
                f"POST /ul HTTP/1.1\r\nHost: {ip}\r\nContent-Length: {nbytes}\r\nConnection: close\r\n\r\n".encode()
            )
            remaining = nbytes
            try:
                while remaining:
                    sent = sock.send(chunk[: min(len(chunk), remaining)])
                    remaining -= sent
                status, _, body = _read_headers(sock)
            except TimeoutError as exc:
                raise DutTimeoutError(f"upload stalled for {stall_timeout:g} s with {remaining} bytes to go") from exc
            seconds = time.monotonic() - started
            while True:  # the JSON body may arrive in a later segment
                try:
                    reply = json.loads(body)
                    break
                except ValueError:
                    more = sock.recv(4096)
                    if not more:
                        raise LabError(f"POST /ul reply is not JSON: {body[:200]!r}") from None
                    body += more
        if status != 200 or reply.get("bytes") != nbytes:
            raise LabError(f"POST /ul: HTTP {status}, DUT counted {reply.get('bytes')} of {nbytes} bytes")
        return Transfer(nbytes, seconds, time.thread_time() - cpu0)

    return ns.call(run)


@dataclass
class PingResult:
    """Echo round trips as `ping` measured them."""

    sent: int
    received: int
    rtts_ms: list[float] = field(default_factory=list)

    @property
    def loss_pct(self) -> float:
        """Lost echoes in percent."""
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else 100.0


_PING_RTT = re.compile(r"icmp_seq=\d+ .*time=([\d.]+) ms")
_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


def ping(ns: Namespace, ip: str, *, count: int = 100, interval: float = 0.01, size: int = 56,
         deadline_s: float | None = None, ipv6_iface: str | None = None) -> PingResult:  # fmt: skip
    """Send ``count`` echoes with iputils ping and collect every RTT.

    Args:
        ns: host-side namespace.
        ip: target address (IPv4, or IPv6 link-local with ``ipv6_iface``).
        count: echoes to send.
        interval: seconds between echoes (below 0.2 needs root, which the lab has).
        size: ICMP payload bytes.
        deadline_s: overall limit; default: enough for all echoes plus 5 s.
        ipv6_iface: interface for a link-local IPv6 target.
    """
    deadline = deadline_s or count * interval + 5
    target = f"{ip}%{ipv6_iface}" if ipv6_iface else ip
    command = [
        "ping",
        "-n",
        "-c",
        str(count),
        "-i",
        str(interval),
        "-s",
        str(size),
        "-W",
        "1",
        "-w",
        str(math.ceil(deadline)),
        target,
    ]
    out = ns.run(*command, timeout=deadline + 5, check=False)
    summary = _PING_SUMMARY.search(out)
    if summary is None:
        raise LabError(f"cannot read ping's output: {out[-300:]!r}")
    rtts = [float(m.group(1)) for m in _PING_RTT.finditer(out)]
    return PingResult(int(summary.group(1)), int(summary.group(2)), rtts)


@dataclass
class Iperf3Result:
    """What the iperf3 client reported."""

    mbps: float
    retransmits: int | None
    raw: dict[str, Any]


def iperf3(ns: Namespace, ip: str, *, seconds: int = 10, reverse: bool = False, udp: bool = False,
           bitrate: str | None = None, port: int = 5201, extra: Sequence[str] = ()) -> Iperf3Result:  # fmt: skip
    """Run the real iperf3 client against the DUT's server and return the receiver-side rate.

    With ``reverse`` the DUT sends (iperf3 ``-R``).
    """
    command = ["iperf3", "-c", ip, "-p", str(port), "-t", str(seconds), "--json", "--connect-timeout", "5000"]
    if reverse:
        command.append("-R")
    if udp:
        command += ["-u", "-b", bitrate or "100M"]
    elif bitrate:
        command += ["-b", bitrate]
    command += list(extra)
    try:
        out = ns.run(*command, timeout=seconds + 20, check=False)
    except LabError as exc:
        raise DutTimeoutError(f"iperf3 against {ip}:{port} hung: {exc}") from exc
    try:
        report = json.loads(out)
    except ValueError as exc:
        raise LabError(f"iperf3 printed no JSON: {out[-300:]!r}") from exc
    if "error" in report:
        raise LabError(f"iperf3 against {ip}:{port} failed: {report['error']}")
    end = report.get("end", {})
    if udp:
        summary = end.get("sum", {})
        return Iperf3Result(summary.get("bits_per_second", 0) / 1e6, None, report)
    received = end.get("sum_received", {})
    sent = end.get("sum_sent", {})
    retransmits = sent.get("retransmits")
    # A sender that cannot read TCP_INFO (the firmware's portable server) reports -1: unknown, not a count.
    known = retransmits if isinstance(retransmits, int) and retransmits >= 0 else None
    return Iperf3Result(received.get("bits_per_second", 0) / 1e6, known, report)


class CpuMeter:
    """CPU used by given processes over an interval, as percent of one core."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._start = 0.0
        self._cpu: dict[int, float] = {}

    def __enter__(self) -> CpuMeter:
        self._start = time.monotonic()
        self._cpu = {pid: _cpu_or_zero(pid) for pid in self.pids}
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        self.percent = {pid: 100 * (_cpu_or_zero(pid) - before) / elapsed for pid, before in self._cpu.items()}


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return 0.0


def host_cpu_times() -> tuple[int, int]:
    """(steal, total) CPU jiffies of this machine so far, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


class StealMeter:
    """Share of CPU time the hypervisor took from this machine over an interval (a noisy neighbour's mark)."""

    def __enter__(self) -> StealMeter:
        self._start = host_cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        steal, total = host_cpu_times()
        elapsed = max(total - self._start[1], 1)
        self.percent = 100 * (steal - self._start[0]) / elapsed


def steal_adjusted_floor(floor_mbps: float, steal_pct: float) -> float:
    """The floor a virtual board is held to when the hypervisor took ``steal_pct`` % of the machine's CPU.

    The virtual DUT runs on the lab machine's own CPUs: while the hypervisor has them, the "chip" does
    not run and no frame moves, so an honest rate shrinks at least in proportion to the stolen time.
    A real board is not slowed by the lab machine's steal and keeps the plain floor.
    """
    return floor_mbps * (1 - min(max(steal_pct, 0.0), 100.0) / 100)


T = TypeVar("T")


# CPU steal (% of the machine's time the hypervisor took) above which an attempt says more about the shared
# runner than about the DUT.
STOLEN_ATTEMPT_PCT = 10.0


def measure_until(
    measure: Callable[[], T],
    good_enough: Callable[[T], bool],
    attempts: int = 2,
    *,
    stolen: Callable[[], bool] | None = None,
    max_attempts: int = 4,
) -> list[T]:
    """Measure, and measure again (up to ``attempts``) while the result is not good enough.

    A DUT that is really slow stays slow on every attempt; a stall of the machine running the lab (CPU
    steal on a shared runner) does not repeat. An attempt that ``stolen()`` says the machine was stolen
    during does not count towards ``attempts`` (up to ``max_attempts`` in all): a stall that lasts does not
    make a DUT slow. Every attempt is returned so all of them get recorded.
    """
    results = [measure()]
    counted = 0 if stolen is not None and stolen() else 1
    while not good_enough(results[-1]) and counted < attempts and len(results) < max_attempts:
        results.append(measure())
        counted += 0 if stolen is not None and stolen() else 1
    return results
