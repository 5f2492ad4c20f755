"""Clients for the DUT's echo services (TCP/UDP echo, the select() echo service), with latency per echo.

One thread drives every socket through a selector, so "N concurrent clients" really are N open
connections with data in flight at once, without one thread per client. Run the functions inside
the lab's host namespace (`Namespace.call`); every wait has a timeout and a failure names the client.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from dataclasses import dataclass, field

from harness.errors import DutTimeoutError, LabError
from harness.lab.netns import require_lab_namespace


@dataclass
class EchoRound:
    """Latencies (seconds) of every echo in a run, per kind."""

    tcp_s: list[float] = field(default_factory=list)
    udp_s: list[float] = field(default_factory=list)
    tcp_bytes: int = 0
    udp_datagrams: int = 0


def open_tcp_clients(ip: str, port: int, count: int, timeout: float = 5.0) -> list[socket.socket]:
    """Connect ``count`` clients; close them all again if any connection fails."""
    require_lab_namespace(ip)
    socks: list[socket.socket] = []
    try:
        for index in range(count):
            try:
                sock = socket.create_connection((ip, port), timeout=timeout)
            except OSError as exc:
                raise LabError(f"TCP client {index + 1} of {count} cannot connect to {ip}:{port}: {exc}") from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(sock)
    except BaseException:
        close_all(socks)
        raise
    return socks


def open_udp_peers(ip: str, ports: list[int]) -> list[tuple[socket.socket, tuple[str, int]]]:
    """One connected UDP socket per port (connected: only the DUT's replies reach it)."""
    require_lab_namespace(ip)
    peers = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((ip, port))
        peers.append((sock, (ip, port)))
    return peers


def close_all(socks: list[socket.socket]) -> None:
    """Close every socket, ignoring errors."""
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


def mixed_round(
    tcp: list[socket.socket], udp: list[tuple[socket.socket, tuple[str, int]]], size: int, timeout: float
) -> EchoRound:
    """Send ``size`` bytes on every TCP client and one datagram per UDP peer at once; wait for every echo.

    Raises:
        DutTimeoutError: some echo did not come back within ``timeout`` (the message lists which).
        LabError: an echo came back different, or a connection closed.
    """
    result = EchoRound()
    pending: dict[socket.socket, tuple[str, bytes, bytearray, float]] = {}
    with selectors.DefaultSelector() as sel:
        for index, sock in enumerate(tcp):
            payload = os.urandom(size)
            sent_at = time.monotonic()
            sock.sendall(payload)  # blocking: small payloads fit the socket buffer at once
            sock.setblocking(False)
            pending[sock] = (f"TCP client {index + 1}", payload, bytearray(), sent_at)
            sel.register(sock, selectors.EVENT_READ)
        for index, (sock, _addr) in enumerate(udp):
            payload = os.urandom(min(size, 1472))
            sock.setblocking(False)
            sent_at = time.monotonic()
            sock.send(payload)
            pending[sock] = (f"UDP peer {index + 1} (port {_addr[1]})", payload, bytearray(), sent_at)
            sel.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = ", ".join(
                    f"{name} ({len(got)}/{len(payload)} B)" for name, payload, got, _ in pending.values()
                )
                raise DutTimeoutError(f"no complete echo within {timeout:g} s for: {missing}")
            for key, _ in sel.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                name, payload, got, sent_at = pending[sock]
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    raise LabError(f"{name}: {exc}") from exc
                if sock.type == socket.SOCK_STREAM and not data:
                    raise LabError(f"{name}: the DUT closed the connection after {len(got)} of {len(payload)} B")
                got += data
                if sock.type == socket.SOCK_DGRAM:
                    if bytes(got) != payload:
                        raise LabError(
                            f"{name}: echoed datagram of {len(got)} B differs from the {len(payload)} B sent"
                        )
                    result.udp_s.append(time.monotonic() - sent_at)
                    result.udp_datagrams += 1
                elif len(got) < len(payload):
                    continue
                else:
                    if bytes(got) != payload:
                        raise LabError(f"{name}: echo of {len(payload)} B came back different")
                    result.tcp_s.append(time.monotonic() - sent_at)
                    result.tcp_bytes += len(payload)
                sel.unregister(sock)
                del pending[sock]
    for sock in tcp:
        sock.setblocking(True)
        sock.settimeout(timeout)
    return result


@dataclass
class ChurnResult:
    """What `churn` saw."""

    cycles: int
    seconds: float
    latencies_s: list[float]


def churn(ip: str, port: int, cycles: int, timeout: float = 5.0) -> ChurnResult:
    """``cycles`` times: connect, echo 32 bytes, close. Stops at the first cycle that fails.

    Raises:
        LabError: a cycle failed; the message gives its number, which tells slot exhaustion apart from noise.
    """
    require_lab_namespace(ip)
    latencies = []
    started = time.monotonic()
    for cycle in range(1, cycles + 1):
        payload = os.urandom(32)
        t0 = time.monotonic()
        try:
            with socket.create_connection((ip, port), timeout=timeout) as sock:
                sock.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    data = sock.recv(64)
                    if not data:
                        raise LabError("closed by the DUT before the echo")
                    got += data
        except (OSError, LabError) as exc:
            raise LabError(f"connect/echo/close cycle {cycle} of {cycles} to {ip}:{port} failed: {exc}") from exc
        if got != payload:
            raise LabError(f"cycle {cycle}: the echo differs from what was sent")
        latencies.append(time.monotonic() - t0)
    return ChurnResult(cycles, time.monotonic() - started, latencies)


def udp_echo_once(ip: str, port: int, size: int = 64, timeout: float = 2.0) -> float:
    """Send one datagram and wait for its echo; return the round trip in seconds.

    Raises:
        DutTimeoutError: no echo within ``timeout``.
    """
    require_lab_namespace(ip)
    payload = os.urandom(size)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((ip, port))
        sock.settimeout(timeout)
        started = time.monotonic()
        sock.send(payload)
        while True:
            try:
                data = sock.recv(2048)
            except TimeoutError as exc:
                raise DutTimeoutError(f"no echo of a {size} B datagram from {ip}:{port} within {timeout:g} s") from exc
            except ConnectionRefusedError as exc:
                raise LabError(f"{ip}:{port} answered with ICMP port unreachable: nothing listens there") from exc
            if data == payload:
                return time.monotonic() - started
