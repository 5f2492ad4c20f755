"""The firmware's select() echo service: many TCP clients plus UDP peers in one select() loop,
and connection churn that must leave no socket or memory behind."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.services_program import ServicesProgram
from harness.testing import wait_for

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (apt-get install gcc)")

HOST = "127.0.0.1"
IO_TIMEOUT_S = 10


@pytest.fixture
def echo() -> Iterator[ServicesProgram]:
    with ServicesProgram(["--select-echo", "0", "0", "4"], sanitized=False, certs=False, mac=None) as services:
        yield services


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_64_tcp_clients_and_4_udp_peers(echo: ServicesProgram) -> None:
    tcp_port = echo.tcp_port("select_echo")
    clients = [socket.create_connection((HOST, tcp_port), timeout=IO_TIMEOUT_S) for _ in range(64)]
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        assert wait_for(lambda: echo.stats()["select_echo"]["open_tcp_clients"] == 64)
        # Every client gets its own payload, bigger than the service's buffer, sent before any is read.
        payloads = [os.urandom(6000 + i) for i in range(len(clients))]
        for sock, payload in zip(clients, payloads, strict=True):
            sock.sendall(payload)
        for peer, port in zip(peers, echo.udp_ports("select_echo"), strict=True):
            peer.settimeout(IO_TIMEOUT_S)
            peer.connect((HOST, port))
        for round_no in range(10):
            for i, peer in enumerate(peers):
                peer.send(f"peer {i} round {round_no}".encode() * 20)
            for i, peer in enumerate(peers):
                assert peer.recv(4096) == f"peer {i} round {round_no}".encode() * 20
        for sock, payload in zip(clients, payloads, strict=True):
            assert recv_exactly(sock, len(payload)) == payload
    finally:
        for sock in clients + peers:
            sock.close()
    assert wait_for(lambda: echo.stats()["select_echo"]["open_tcp_clients"] == 0)
    stats = echo.stats()["select_echo"]
    assert stats["accepted"] == 64 and stats["closed"] == 64 and stats["rejected"] == 0
    assert stats["tcp_echoed_bytes"] == sum(len(p) for p in payloads)
    assert stats["udp_datagrams"] == 40
    assert stats["errors"] == 0


def test_a_client_that_does_not_read_cannot_stall_the_others(echo: ServicesProgram) -> None:
    port = echo.tcp_port("select_echo")
    with (
        socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S) as hog,
        socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S) as other,
    ):
        hog.setblocking(False)
        sent = 0
        blob = os.urandom(65536)
        # Fill both directions of the hog's connection until the kernel refuses more.
        deadline = time.monotonic() + IO_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                sent += hog.send(blob)
            except BlockingIOError:
                break
        assert sent > 0
        other.sendall(b"still served")
        assert recv_exactly(other, 12) == b"still served"
        hog.setblocking(True)
        hog.settimeout(IO_TIMEOUT_S)
        received = 0
        while received < sent:
            received += len(hog.recv(1 << 20))
        assert received == sent


def test_500_cycles_leave_no_socket_or_memory_behind(echo: ServicesProgram) -> None:
    pid = echo.pid
    port = echo.tcp_port("select_echo")
    # Warm up allocator arenas and stats, then take the baseline.
    for _ in range(20):
        with socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S) as sock:
            sock.sendall(b"warm")
            recv_exactly(sock, 4)
    assert wait_for(lambda: echo.stats()["select_echo"]["open_tcp_clients"] == 0)
    fds_before, rss_before = fd_count(pid), rss_kib(pid)
    for i in range(500):
        with socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S) as sock:
            message = f"cycle {i}".encode()
            sock.sendall(message)
            assert recv_exactly(sock, len(message)) == message
    assert wait_for(lambda: echo.stats()["select_echo"]["open_tcp_clients"] == 0)
    stats = echo.stats()["select_echo"]
    assert stats["accepted"] == 520 and stats["closed"] == 520
    assert stats["errors"] == 0 and stats["rejected"] == 0
    assert fd_count(pid) == fds_before
    # Each client's buffer is freed on close: 500 cycles must not grow the process measurably.
    assert rss_kib(pid) - rss_before < 512
