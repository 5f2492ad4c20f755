"""The esp-smoltcp shim's known defects (read from its published sources, CONTEXT.md), one scenario each.

Every test states plain socket behaviour any stack must have and runs on every board; its failure message
names the defect. Each defect's name is also the fault of the virtual board's catalogue that reproduces it in
the native firmware's shim (harness/boards/virtual/faults.py, docs/faults.md): `hil selftest` proves that
these tests fail, naming it, when it is switched on. On a board whose HIL_HELLO reports an
esp_smoltcp_lwip_compat version known to have the defect, the test is a strict xfail (it must fail there: a
pass means the defect is fixed and the table below is out of date). Select them all with
`-m known_shim_defect`.
"""

from __future__ import annotations

import socket

import pytest

from harness.boards.board import Board

# esp_smoltcp_lwip_compat versions whose sources have each defect (published: 0.1.0, 0.1.1, 0.2.0-rc.1).
PUBLISHED = frozenset({"0.1.0", "0.1.1", "0.2.0-rc.1"})
DEFECTS = {
    "shim_udp_select_consumes": (
        "select() probes UDP with a zero-length recvfrom that dequeues the datagram",
        PUBLISHED,
    ),
    "shim_fin_not_readable": (
        "a peer's FIN never makes the socket readable (connected stays true in CLOSE-WAIT)",
        PUBLISHED,
    ),
    "shim_close_without_fin": ("close() and shutdown() drop the socket without sending FIN", PUBLISHED),
    "shim_loopback_recv_ignored": ("recv() on a UDP socket ignores the in-RAM loopback queue", PUBLISHED),
    "shim_loopback_port0_refused": ("bind(127.0.0.1:0) is refused by the in-RAM loopback", PUBLISHED),
}
WAIT_S = 5.0
ONE_SHOT_CLIENTS = 20
LOOPBACK_RECV_TIMEOUT_S = 30.0


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


def _keepalive_after_1s(sock: socket.socket) -> None:
    """Keep-alive probes after 1 s of silence: a peer that still holds the connection acknowledges them, one
    whose socket is gone answers with a reset (ten probes, so the probing itself never times out in a test)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 10)


def _read_to_eof(sock: socket.socket) -> tuple[bytes, str]:
    """Everything until the peer's FIN: (data, "eof"), or (data so far, "open") after the socket's timeout, or
    (data so far, "reset")."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return data, "open"
    except ConnectionResetError:
        return data, "reset"
    return data, "eof"


@pytest.mark.known_shim_defect("shim_udp_select_consumes")
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
        f"shim_udp_select_consumes: no echo from the select() loop on UDP {port} within {WAIT_S:g} s: select() "
        "never reported the UDP socket readable (or its readiness probe consumed the datagram)"
    )


@pytest.mark.known_shim_defect("shim_fin_not_readable")
def test_peer_fin_ends_the_echo_connection(board: Board, lab, dut_ip: str) -> None:
    """The client sends, then shuts its side: the echo server reads EOF, closes, and the client sees EOF."""
    port = int(_services(board).get("tcp_echo", 7))

    def exchange() -> tuple[bytes, str]:
        with socket.create_connection((dut_ip, port), timeout=WAIT_S) as sock:
            _keepalive_after_1s(sock)
            sock.sendall(b"hil-fin")
            sock.shutdown(socket.SHUT_WR)
            return _read_to_eof(sock)

    data, end = lab.host.call(exchange, timeout=WAIT_S + 5)
    assert data == b"hil-fin", f"the echo returned {data!r} before the FIN"
    assert end != "reset", (
        "shim_close_without_fin: the DUT read the client's FIN and closed, but no FIN came back: its socket was "
        "gone (a keep-alive probe was answered with a reset), close() dropped it without a FIN"
    )
    assert end == "eof", (
        f"shim_fin_not_readable: after the client's FIN the DUT kept the connection open for {WAIT_S:g} s (it "
        "still acknowledges keep-alive probes): its recv() never returned 0 for the peer's FIN"
    )


@pytest.mark.known_shim_defect("shim_close_without_fin")
def test_server_close_reaches_the_client_as_eof(board: Board, lab, dut_ip: str) -> None:
    """An HTTP request with `Connection: close`: the server answers, closes, and the client reads EOF."""
    port = int(_services(board).get("http", 80))

    def exchange() -> tuple[bytes, str]:
        with socket.create_connection((dut_ip, port), timeout=WAIT_S) as sock:
            sock.sendall(b"GET /dl/100 HTTP/1.1\r\nHost: hil-dut\r\nConnection: close\r\n\r\n")
            return _read_to_eof(sock)

    data, end = lab.host.call(exchange, timeout=WAIT_S + 5)
    assert data.startswith(b"HTTP/1.1 200"), f"no answer to the request: {data[:80]!r}"
    assert end == "eof", (
        f"shim_close_without_fin: the server answered `Connection: close` but no FIN reached the client "
        f"({'a reset instead' if end == 'reset' else f'nothing within {WAIT_S:g} s'}): its close() (or "
        "shutdown()) dropped the socket without a FIN"
    )


@pytest.mark.known_shim_defect("shim_loopback_recv_ignored")
def test_httpd_control_socket_path_delivers(board: Board) -> None:
    """Datagrams to a 127.0.0.1 socket are read back with recv(), as esp_http_server reads its control socket."""
    # A shim with the defect spends its receive timeout on each of the 16 datagrams (1 s in the firmware).
    reply = board.command("loopback recv", timeout=LOOPBACK_RECV_TIMEOUT_S)
    assert reply.get("ok"), (
        f"shim_loopback_recv_ignored: recv() on a 127.0.0.1 UDP socket did not return the datagrams sent to it "
        f"({reply.get('error')}): esp_http_server's control messages (session purge, queued work) never arrive"
    )


@pytest.mark.known_shim_defect("shim_loopback_recv_ignored")
def test_httpd_answers_after_20_clients_that_close_first(board: Board, lab, dut_ip: str) -> None:
    """20 one-shot clients connect and close before sending anything; the server still answers afterwards."""
    port = int(_services(board).get("http", 80))

    def exchange() -> tuple[int, bytes, str]:
        for index in range(ONE_SHOT_CLIENTS):
            try:
                with socket.create_connection((dut_ip, port), timeout=WAIT_S):
                    pass
            except OSError as exc:
                return index, b"", f"client {index + 1} could not connect: {exc!r}"
        try:
            with socket.create_connection((dut_ip, port), timeout=WAIT_S) as sock:
                sock.sendall(b"GET /dl/10 HTTP/1.1\r\nHost: hil-dut\r\n\r\n")
                return ONE_SHOT_CLIENTS, sock.recv(4096), ""
        except OSError as exc:
            return ONE_SHOT_CLIENTS, b"", f"the request after them got {exc!r}"

    closed, answer, trouble = lab.host.call(exchange, timeout=(ONE_SHOT_CLIENTS + 2) * WAIT_S + 10)
    assert answer.startswith(b"HTTP/1.1 200"), (
        f"after {closed} clients that connected and closed first the HTTP server no longer answers "
        f"({trouble or repr(answer[:60])}): its sessions filled and none was freed: shim_fin_not_readable (it never "
        "saw their FINs) or shim_loopback_recv_ignored (the session purge never came through the control socket)"
    )


@pytest.mark.known_shim_defect("shim_loopback_port0_refused")
def test_loopback_bind_to_port_zero(board: Board) -> None:
    """A UDP socket binds 127.0.0.1:0 (the stack picks the port) and receives what is sent to it."""
    reply = board.command("loopback ephemeral")
    assert reply.get("ok"), (
        f"shim_loopback_port0_refused: bind(127.0.0.1:0) or the exchange failed: {reply.get('error')}"
    )
