"""The esp-smoltcp shim's known defects (read from its published sources, CONTEXT.md), one scenario each.

Every test states plain socket behaviour any stack must have and runs on every board; its failure message
names the defect. On a board whose HIL_HELLO reports an esp_smoltcp_lwip_compat version known to have the
defect, the test is a strict xfail (it must fail there: a pass means the defect is fixed and the table below
is out of date). Select them all with `-m known_shim_defect`.
"""

from __future__ import annotations

import socket
import time

import pytest

from harness.boards.board import Board

# esp_smoltcp_lwip_compat versions whose sources have each defect (published: 0.1.0, 0.1.1, 0.2.0-rc.1).
PUBLISHED = frozenset({"0.1.0", "0.1.1", "0.2.0-rc.1"})
DEFECTS = {
    "udp_never_readable": ("select() probes UDP with a zero-length recvfrom that dequeues the datagram", PUBLISHED),
    "fin_not_readable": (
        "a peer's FIN never makes the socket readable (connected stays true in CLOSE-WAIT)",
        PUBLISHED,
    ),
    "close_without_fin": ("close() drops the socket without sending FIN", PUBLISHED),
    "loopback_recv_ignored": ("recv() on a UDP socket ignores the in-RAM loopback queue", PUBLISHED),
    "loopback_port0_refused": ("bind(127.0.0.1:0) is refused by the in-RAM loopback", PUBLISHED),
}
WAIT_S = 5.0


@pytest.fixture(autouse=True)
def _known_defect(request: pytest.FixtureRequest, board: Board) -> None:
    """Strict xfail when the firmware's shim version is one known to have this test's defect."""
    marker = request.node.get_closest_marker("known_shim_defect")
    if marker is None:
        return
    name = marker.args[0]
    behaviour, versions = DEFECTS[name]
    version = (board.hello.get("components") or {}).get("esp_smoltcp_lwip_compat")
    if version in versions:
        request.applymarker(
            pytest.mark.xfail(strict=True, reason=f"esp_smoltcp_lwip_compat {version}: {name}: {behaviour}")
        )


def _services(board: Board) -> dict:
    return board.hello.get("services") or {}


@pytest.mark.known_shim_defect("udp_never_readable")
def test_select_wakes_for_a_lone_udp_datagram(board: Board, lab, dut_ip: str) -> None:
    """A datagram to a select() echo UDP port, with no TCP traffic, comes back."""
    port = int(_services(board).get("select_echo_udp", 7001))

    def exchange() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(WAIT_S)
            sock.sendto(b"hil-udp-readable", (dut_ip, port))
            try:
                return sock.recv(64)
            except TimeoutError:
                return None

    got = lab.host.call(exchange, timeout=WAIT_S + 5)
    assert got == b"hil-udp-readable", (
        f"udp_never_readable: no echo from the select() loop on UDP {port} within {WAIT_S:g} s: select() never "
        "reported the UDP socket readable (or its readiness probe consumed the datagram)"
    )


@pytest.mark.known_shim_defect("fin_not_readable")
def test_peer_fin_ends_the_echo_connection(board: Board, lab, dut_ip: str) -> None:
    """The client sends, then shuts its side: the echo server reads EOF, closes, and the client sees EOF."""
    port = int(_services(board).get("tcp_echo", 7))

    def exchange() -> tuple[bytes, float | None]:
        with socket.create_connection((dut_ip, port), timeout=WAIT_S) as sock:
            sock.sendall(b"hil-fin")
            sock.shutdown(socket.SHUT_WR)
            data, start = b"", time.monotonic()
            try:
                while chunk := sock.recv(64):
                    data += chunk
            except TimeoutError:
                return data, None
            return data, time.monotonic() - start

    data, eof_after = lab.host.call(exchange, timeout=WAIT_S + 5)
    assert data == b"hil-fin", f"the echo returned {data!r} before the FIN"
    assert eof_after is not None, (
        f"fin_not_readable: after the client's FIN the DUT kept the connection open for {WAIT_S:g} s: its recv() "
        "never returned 0 for the peer's FIN (or close_without_fin: it closed without sending FIN)"
    )


@pytest.mark.known_shim_defect("close_without_fin")
def test_server_close_reaches_the_client_as_eof(board: Board, lab, dut_ip: str) -> None:
    """An HTTP request with `Connection: close`: the server answers, closes, and the client reads EOF."""
    port = int(_services(board).get("http", 80))

    def exchange() -> tuple[bytes, bool]:
        with socket.create_connection((dut_ip, port), timeout=WAIT_S) as sock:
            sock.sendall(b"GET /dl/100 HTTP/1.1\r\nHost: hil-dut\r\nConnection: close\r\n\r\n")
            data = b""
            try:
                while chunk := sock.recv(4096):
                    data += chunk
            except TimeoutError:
                return data, False
            return data, True

    data, eof = lab.host.call(exchange, timeout=WAIT_S + 5)
    assert data.startswith(b"HTTP/1.1 200"), f"no answer to the request: {data[:80]!r}"
    assert eof, (
        f"close_without_fin: the server answered `Connection: close` but no FIN reached the client within "
        f"{WAIT_S:g} s: its close() dropped the socket without a FIN"
    )


@pytest.mark.known_shim_defect("loopback_recv_ignored")
def test_httpd_control_socket_path_delivers(board: Board) -> None:
    """Datagrams to a 127.0.0.1 socket are read back with recv(), as esp_http_server reads its control socket."""
    reply = board.command("loopback recv")
    assert reply.get("ok"), (
        f"loopback_recv_ignored: recv() on a 127.0.0.1 UDP socket did not return the datagrams sent to it "
        f"({reply.get('error')}): esp_http_server's control messages (session purge, queued work) never arrive"
    )


@pytest.mark.known_shim_defect("loopback_recv_ignored")
def test_httpd_answers_after_20_clients_that_close_first(board: Board, lab, dut_ip: str) -> None:
    """20 one-shot clients connect and close before sending anything; the server still answers afterwards."""
    port = int(_services(board).get("http", 80))

    def exchange() -> bytes:
        for _ in range(20):
            with socket.create_connection((dut_ip, port), timeout=WAIT_S):
                pass
        with socket.create_connection((dut_ip, port), timeout=WAIT_S) as sock:
            sock.sendall(b"GET /dl/10 HTTP/1.1\r\nHost: hil-dut\r\n\r\n")
            try:
                return sock.recv(4096)
            except TimeoutError:
                return b""

    answer = lab.host.call(exchange, timeout=4 * WAIT_S + 20)
    assert answer.startswith(b"HTTP/1.1 200"), (
        "loopback_recv_ignored: after 20 clients that closed first the HTTP server no longer answers "
        f"({answer[:60]!r}): its sessions filled and the purge never came through the control socket"
    )


@pytest.mark.known_shim_defect("loopback_port0_refused")
def test_loopback_bind_to_port_zero(board: Board) -> None:
    """A UDP socket binds 127.0.0.1:0 (the stack picks the port) and receives what is sent to it."""
    reply = board.command("loopback ephemeral")
    assert reply.get("ok"), f"loopback_port0_refused: bind(127.0.0.1:0) or the exchange failed: {reply.get('error')}"
