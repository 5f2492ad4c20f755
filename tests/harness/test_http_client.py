"""The lab's HTTP/WebSocket client (harness/lab/http_client.py) against the firmware's C httpd, run as
`hil-services` on loopback (no lab needed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.errors import LabError
from harness.lab.http_client import WS_BINARY, WS_CLOSE, WS_TEXT, HttpConnection, WebSocket, dl_pattern, mask_payload
from harness.services_program import ServicesProgram


@pytest.fixture(scope="module")
def server() -> Iterator[ServicesProgram]:
    with ServicesProgram(["--http", "0"], sanitized=False, certs=False) as program:
        yield program


def _port(server: ServicesProgram) -> int:
    return server.tcp_port("http")


def test_keep_alive_and_chunked(server: ServicesProgram) -> None:
    with HttpConnection("127.0.0.1", _port(server)) as conn:
        for _ in range(3):
            response = conn.get("/dl/3000")
            assert response.status == 200 and response.body == dl_pattern(3000) and not response.closed
        chunked = conn.get("/dl/20000?chunked=1", keep_alive=False)
    assert chunked.body == dl_pattern(20000) and chunked.chunks == 3


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"FROB / HTTP/1.1\r\n\r\n", 501),
        (b"GET /stats HTTP/9.9\r\n\r\n", 505),
        (b"POST /ul HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /stats HTTP/1.1\r\nX-Long: " + b"x" * 2048 + b"\r\n\r\n", 431),
    ],
)
def test_errors(server: ServicesProgram, request_bytes: bytes, status: int) -> None:
    with HttpConnection("127.0.0.1", _port(server)) as conn:
        assert conn.request_raw(request_bytes).status == status


def test_truncated_request_is_refused(server: ServicesProgram) -> None:
    with HttpConnection("127.0.0.1", _port(server)) as conn:
        assert conn.request_raw(b"GET /stats HTTP/1.1\r\nX-Cut", half_close=True).status == 400


def test_websocket_echo_and_limit(server: ServicesProgram) -> None:
    ws = WebSocket.connect("127.0.0.1", _port(server))
    for size in (0, 1, 125, 126, 16384):
        reply, _ = ws.echo(WS_BINARY, dl_pattern(size))
        assert (reply.opcode, reply.payload) == (WS_BINARY, dl_pattern(size))
    reply, _ = ws.echo(WS_TEXT, b"hello")
    assert reply.payload == b"hello"
    ws.send(WS_BINARY, bytes(16385))
    closing = ws.receive()
    assert closing.opcode == WS_CLOSE and closing.close_code == 1009
    ws.conn.close()


def test_mask_is_its_own_inverse() -> None:
    data = bytes(range(256)) * 3
    assert mask_payload(mask_payload(data, b"\x01\x02\x03\x04"), b"\x01\x02\x03\x04") == data


def test_refuses_lab_address_from_root_namespace() -> None:
    with pytest.raises(LabError, match=r"lab\.host\.call"):
        HttpConnection("10.77.0.100", 80)
