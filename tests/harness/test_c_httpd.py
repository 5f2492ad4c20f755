"""The firmware's C HTTP and HTTPS servers (firmware/services/src/httpd.c) against real clients on loopback.

One `hil-services` (ASan/UBSan build) serves the whole module; http.client, curl, Python's ssl and the
suite's own HTTP/WebSocket client talk to it. At the end it must quit cleanly with no sanitizer report.
"""

from __future__ import annotations

import http.client
import json
import math
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.lab.http_client import (
    WS_BINARY,
    WS_CLOSE,
    WS_PING,
    WS_PONG,
    WS_TEXT,
    HttpConnection,
    WebSocket,
    dl_pattern,
    mask_payload,
)
from harness.lab.peers import TEST_CA, client_context
from harness.services_program import ServicesProgram, check_clean_exit
from harness.testing import wait_for

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (apt-get install gcc)")

HOST = "127.0.0.1"
DUT_NAME = "hil-dut"  # a name of the DUT's certificate (PROTOCOL.md)
MAX_CONN = 16  # HIL_HTTP_MAX_CONN on the host
STATS_FIELDS = {"proto", "trigger", "iface", "rx_frames", "rx_bytes", "rx_drops", "tx_frames", "tx_bytes", "tx_fails",
                "link_ups", "link_downs", "active_sockets", "frame_pool_drops", "heap_free", "heap_min_free",
                "uptime_ms"}  # fmt: skip


@pytest.fixture(scope="module")
def program() -> Iterator[ServicesProgram]:
    """HTTP and HTTPS on free ports, stats from the loopback interface's counters."""
    services = ServicesProgram(["--http", "0", "--https", "0", "--stats-iface", "lo"])
    with services:
        yield services
        check_clean_exit(services)


@pytest.fixture
def port(program: ServicesProgram) -> int:
    return program.tcp_port("http")


def get(port: int, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def open_connections(program: ServicesProgram) -> int:
    return program.command("stats")["http"]["open_connections"]


@pytest.mark.parametrize("nbytes", [0, 1, 255, 256, 1000, 70_000, 1_000_000])
def test_download_has_the_length_and_the_pattern(port: int, nbytes: int) -> None:
    status, headers, body = get(port, f"/dl/{nbytes}")
    assert status == 200
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-length"] == str(nbytes)
    assert body == dl_pattern(nbytes)


@pytest.mark.parametrize("nbytes", [0, 5, 8192, 8193, 100_000])
def test_chunked_download_decodes_to_the_pattern_in_chunks_of_8192(port: int, nbytes: int) -> None:
    with HttpConnection(HOST, port) as conn:
        response = conn.get(f"/dl/{nbytes}?chunked=1")
    assert response.status == 200
    assert response.headers["transfer-encoding"] == "chunked" and "content-length" not in response.headers
    assert response.body == dl_pattern(nbytes)
    assert response.chunks == math.ceil(nbytes / 8192), "chunks of at most 8192 bytes, all but the last full"


def test_a_large_download_through_curl(port: int) -> None:
    result = subprocess.run(["curl", "-sS", "-o", "-", f"http://{HOST}:{port}/dl/20000000"], capture_output=True,
                            timeout=60, check=True)  # fmt: skip
    assert result.stdout == dl_pattern(20_000_000)


def test_keep_alive_serves_many_requests_on_one_connection(port: int) -> None:
    with HttpConnection(HOST, port) as conn:
        for index in range(40):
            response = conn.get(f"/dl/{1024 + index}")
            assert response.status == 200 and response.body == dl_pattern(1024 + index)
            assert not response.closed and not conn.peer_closed
        last = conn.get("/dl/3", keep_alive=False)
        assert last.closed and last.body == dl_pattern(3)
        assert conn.wait_closed(2.0), "the server kept the connection after `Connection: close`"


def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    pipelined = (b"GET /dl/10 HTTP/1.1\r\nHost: dut\r\n\r\n"
                 b"POST /ul HTTP/1.1\r\nHost: dut\r\nContent-Length: 5\r\n\r\nhello"
                 b"GET /dl/300?chunked=1 HTTP/1.1\r\nHost: dut\r\n\r\n"
                 b"GET /stats HTTP/1.1\r\nHost: dut\r\nConnection: close\r\n\r\n")  # fmt: skip
    with HttpConnection(HOST, port) as conn:
        first = conn.request_raw(pipelined)
        upload, chunked, stats = (conn.request_raw(b"") for _ in range(3))
    assert first.body == dl_pattern(10)
    assert upload.status == 200 and json.loads(upload.body)["bytes"] == 5
    assert chunked.body == dl_pattern(300) and chunked.chunks == 1
    assert stats.status == 200 and stats.closed


def test_upload_counts_the_body_and_times_it(port: int) -> None:
    body = bytes(range(256)) * 12_000
    status, headers, reply = get(port, "/ul", "POST", body)
    assert status == 200 and headers["content-type"] == "application/json"
    result = json.loads(reply)
    assert result["bytes"] == len(body)
    assert result["duration_us"] >= 0
    # No Content-Length: PROTOCOL.md counts it as 0.
    with HttpConnection(HOST, port) as conn:
        response = conn.request_raw(b"POST /ul HTTP/1.1\r\nHost: dut\r\n\r\n")
    assert json.loads(response.body) == {"bytes": 0, "duration_us": 0}


def test_stats_is_the_hil_stats_object(port: int) -> None:
    status, headers, body = get(port, "/stats")
    stats = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert set(stats) == STATS_FIELDS
    assert (stats["proto"], stats["trigger"], stats["iface"]) == (1, "http", "eth")
    assert stats["rx_frames"] > 0 and stats["uptime_ms"] > 0, "counters of the loopback interface since start-up"


def test_stats_without_a_source_is_503() -> None:
    with ServicesProgram(["--http", "0"], sanitized=False, certs=False) as plain:
        status, _, body = get(plain.tcp_port("http"), "/stats")
    assert status == 503 and body == b"no stats source"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nope", 404), ("POST", "/stats", 404), ("GET", "/ul", 404), ("GET", "/dl/abc", 400),
    ("GET", "/dl/1000000000001", 400), ("GET", "/dl/99999999999999", 400), ("GET", "/dl/", 400),
])  # fmt: skip
def test_other_paths_are_refused(port: int, method: str, path: str, status: int) -> None:
    assert get(port, path, method)[0] == status


MALFORMED = [
    ("bad_method", b"FROB /stats HTTP/1.1\r\nHost: dut\r\n\r\n", 501),
    ("bad_version", b"GET /stats HTTP/9.9\r\nHost: dut\r\n\r\n", 505),
    ("garbage_version", b"GET /stats HXXP/1.1\r\nHost: dut\r\n\r\n", 400),
    ("content_length_negative", b"POST /ul HTTP/1.1\r\nHost: dut\r\nContent-Length: -5\r\n\r\n", 400),
    ("content_length_overflow", b"POST /ul HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    ("content_length_text", b"POST /ul HTTP/1.1\r\nHost: dut\r\nContent-Length: lots\r\n\r\n", 400),
    ("chunked_request_body", b"POST /ul HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
    ("long_header_line", b"GET /dl/1 HTTP/1.1\r\nX-Hil-Long: " + b"h" * 2048 + b"\r\n\r\n", 431),
    ("long_target", b"GET /" + b"x" * 200 + b" HTTP/1.1\r\n\r\n", 414),
    ("binary_garbage", bytes(range(256)) + b"\r\n\r\n", 400),
]  # fmt: skip


@pytest.mark.parametrize(("request_bytes", "status"), [pytest.param(*case[1:], id=case[0]) for case in MALFORMED])
def test_malformed_requests_get_an_error_and_the_server_lives_on(port: int, request_bytes: bytes, status: int) -> None:
    with HttpConnection(HOST, port) as conn:
        response = conn.request_raw(request_bytes)
        assert response.status == status and response.closed
        assert conn.wait_closed(2.0)
    assert get(port, "/dl/16")[2] == dl_pattern(16)


def test_a_request_cut_short_gets_400(port: int) -> None:
    with HttpConnection(HOST, port) as conn:
        response = conn.request_raw(b"GET /stats HTTP/1.1\r\nHost: dut\r\nX-Cut", half_close=True)
    assert response.status == 400


def test_a_stalled_request_times_out_with_408(port: int) -> None:
    with HttpConnection(HOST, port, timeout=10) as conn:
        started = time.monotonic()
        response = conn.request_raw(b"GET /stats HTTP/1.1\r\n")
    assert response.status == 408 and 4.5 < time.monotonic() - started < 8


def test_concurrent_one_shot_clients(program: ServicesProgram, port: int) -> None:
    def client(index: int) -> None:
        for request in range(20):
            with HttpConnection(HOST, port, timeout=10) as conn:
                response = conn.get(f"/dl/{1000 + index * 20 + request}", keep_alive=False)
            assert response.body == dl_pattern(1000 + index * 20 + request)

    with ThreadPoolExecutor(max_workers=MAX_CONN) as pool:
        list(pool.map(client, range(MAX_CONN)))
    assert wait_for(lambda: open_connections(program) == 0), "connection slots were not given back"


def test_idle_keep_alive_connections_make_room_for_new_ones(program: ServicesProgram, port: int) -> None:
    purged_before = program.command("stats")["http"]["purged"]
    idle = [HttpConnection(HOST, port) for _ in range(MAX_CONN)]
    try:
        for conn in idle:
            assert conn.get("/dl/1").status == 200
        # Every slot holds an idle keep-alive connection: a new client still gets served.
        assert get(port, "/dl/100")[2] == dl_pattern(100)
        assert idle[0].wait_closed(5.0), "the least recently active idle connection was not the one closed"
        assert program.command("stats")["http"]["purged"] >= purged_before + 1
    finally:
        for conn in idle:
            conn.close()
    assert wait_for(lambda: open_connections(program) == 0)


# --- WebSocket ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 1000, 65535 // 4, 16384])
def test_websocket_echoes_text_and_binary(port: int, size: int) -> None:
    ws = WebSocket.connect(HOST, port)
    try:
        for opcode in (WS_TEXT, WS_BINARY):
            payload = (b"hil-ws " * (size // 7 + 1))[:size] if opcode == WS_TEXT else dl_pattern(size)
            reply, _ = ws.echo(opcode, payload)
            assert (reply.opcode, reply.payload, reply.fin) == (opcode, payload, True)
        close = ws.close(1000)
    finally:
        ws.conn.close()
    assert close is not None and close.close_code == 1000, "a close is answered with the same status"


def test_websocket_ping_fragments_and_several_frames_in_one_segment(port: int) -> None:
    ws = WebSocket.connect(HOST, port)
    try:
        pong, _ = ws.echo(WS_PING, b"hil")
        assert (pong.opcode, pong.payload) == (WS_PONG, b"hil")
        ws.send(WS_TEXT, b"frag-1 ", fin=False)
        ws.send(0x0, b"frag-2", fin=True)
        first, second = ws.receive(), ws.receive()
        assert (first.opcode, first.fin, first.payload) == (WS_TEXT, False, b"frag-1 ")
        assert (second.opcode, second.fin, second.payload) == (0x0, True, b"frag-2")
        # Three masked frames in one write: each is echoed.
        frames = b"".join(_masked_frame(WS_BINARY, bytes([i]) * 300) for i in range(3))
        ws.conn.sock.sendall(frames)
        assert [ws.receive().payload for _ in range(3)] == [bytes([i]) * 300 for i in range(3)]
    finally:
        ws.conn.close()


def _masked_frame(opcode: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    header = (
        struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, len(payload))
        if len(payload) > 125
        else struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload))
    )
    return header + mask + mask_payload(payload, mask)


def test_websocket_message_over_16_kib_closes_with_1009(port: int) -> None:
    ws = WebSocket.connect(HOST, port)
    try:
        ws.send(WS_BINARY, bytes(65536))
        reply = ws.receive()
        assert (reply.opcode, reply.close_code) == (WS_CLOSE, 1009)
        assert ws.conn.wait_closed(3.0)
    finally:
        ws.conn.close()
    assert get(port, "/dl/16")[0] == 200


def test_websocket_unmasked_frame_closes_with_1002(port: int) -> None:
    ws = WebSocket.connect(HOST, port)
    try:
        ws.conn.sock.sendall(struct.pack("!BB", 0x80 | WS_TEXT, 3) + b"abc")
        reply = ws.receive()
        assert (reply.opcode, reply.close_code) == (WS_CLOSE, 1002)
    finally:
        ws.conn.close()


def test_websocket_handshake_without_a_key_is_400(port: int) -> None:
    with HttpConnection(HOST, port) as conn:
        response = conn.request_raw(b"GET /ws HTTP/1.1\r\nHost: dut\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                    b"Sec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
    assert response.status == 400


# --- HTTPS -------------------------------------------------------------------------------------------------


def tls_connect(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
    raw = socket.create_connection((HOST, port), timeout=10)
    try:
        return context.wrap_socket(raw, server_hostname=DUT_NAME, session=session)
    except BaseException:
        raw.close()
        raise


def tls_get(tls: ssl.SSLSocket, path: str) -> tuple[int, bytes]:
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {DUT_NAME}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := tls.recv(65536):
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), body


def test_https_serves_the_endpoints_verified_as_hil_dut(program: ServicesProgram) -> None:
    port = program.tcp_port("https")
    with tls_connect(port, client_context()) as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.getpeercert()["subject"][-1] == (("commonName", DUT_NAME),)
        status, body = tls_get(tls, "/dl/300000")
    assert status == 200 and body == dl_pattern(300_000)
    with tls_connect(port, client_context()) as tls:
        status, body = tls_get(tls, "/stats")
    assert status == 200 and json.loads(body)["trigger"] == "http"


def test_https_through_curl_with_the_test_ca(program: ServicesProgram) -> None:
    port = program.tcp_port("https")
    result = subprocess.run(["curl", "-sS", "--cacert", str(TEST_CA.cert), "--resolve", f"{DUT_NAME}:{port}:{HOST}",
                             f"https://{DUT_NAME}:{port}/dl/1000000?chunked=1"],
                            capture_output=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == dl_pattern(1_000_000)


def test_https_resumes_sessions_with_tickets(program: ServicesProgram) -> None:
    port = program.tcp_port("https")
    context = client_context()
    with tls_connect(port, context) as tls:
        tls_get(tls, "/dl/16")
        session = tls.session
    with tls_connect(port, context, session=session) as tls:
        assert tls.session_reused
        assert tls_get(tls, "/dl/16") == (200, dl_pattern(16))


def test_websocket_over_tls(program: ServicesProgram) -> None:
    port = program.tcp_port("https")
    with tls_connect(port, client_context()) as tls:
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        tls.sendall(f"GET /ws HTTP/1.1\r\nHost: {DUT_NAME}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())  # fmt: skip
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(1)
        assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        payload = dl_pattern(5000)
        tls.sendall(_masked_frame(WS_BINARY, payload))
        reply = b""
        while len(reply) < 4 + len(payload):
            reply += tls.recv(65536)
    assert reply == struct.pack("!BBH", 0x80 | WS_BINARY, 126, len(payload)) + payload


def _only_rsa_key_exchange() -> ssl.SSLContext:
    context = client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-SHA256")  # RSA key exchange: impossible with the DUT's ECDSA key
    return context


def _only_tls_1_0() -> ssl.SSLContext:
    context = client_context()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated is the point of this client
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1
    return context


@pytest.mark.parametrize("make_context", [_only_rsa_key_exchange, _only_tls_1_0])
def test_https_refuses_what_it_does_not_support(program: ServicesProgram, make_context) -> None:
    port = program.tcp_port("https")
    failures_before = program.command("stats")["http"]["tls_failures"]
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(port, make_context()).close()
    assert wait_for(lambda: program.command("stats")["http"]["tls_failures"] == failures_before + 1)
    with tls_connect(port, client_context()) as tls:
        assert tls_get(tls, "/dl/1000") == (200, dl_pattern(1000))


def test_a_silent_tls_client_does_not_block_others(program: ServicesProgram) -> None:
    port = program.tcp_port("https")
    silent = socket.create_connection((HOST, port), timeout=10)  # never says ClientHello
    try:
        with tls_connect(port, client_context()) as tls:
            assert tls_get(tls, "/dl/10") == (200, dl_pattern(10))
    finally:
        silent.close()


def test_the_release_build_serves_too() -> None:
    """The functional tests above run the sanitizer build; the release build must behave the same."""
    with ServicesProgram(["--http", "0", "--https", "0"], sanitized=False) as release:
        port = release.tcp_port("http")
        assert get(port, "/dl/5000000")[2] == dl_pattern(5_000_000)
        assert json.loads(get(port, "/ul", "POST", bytes(100_000))[2])["bytes"] == 100_000
        ws = WebSocket.connect(HOST, port)
        try:
            assert ws.echo(WS_BINARY, dl_pattern(16384))[0].payload == dl_pattern(16384)
        finally:
            ws.conn.close()
        with tls_connect(release.tcp_port("https"), client_context()) as tls:
            assert tls_get(tls, "/dl/100000") == (200, dl_pattern(100_000))
        check_clean_exit(release)


def test_many_sequential_connections_leave_no_slot_behind(program: ServicesProgram, port: int) -> None:
    """Issue 13: an HTTP server keeps answering after many one-shot clients that each close first."""
    accepted_before = program.command("stats")["http"]["accepted"]
    for index in range(60):
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(b"GET /dl/64 HTTP/1.1\r\nHost: dut\r\n\r\n")
            if index % 2:
                sock.recv(1)  # half of them leave in the middle of the response
    assert get(port, "/dl/64")[2] == dl_pattern(64)
    assert program.command("stats")["http"]["accepted"] == accepted_before + 61
    assert wait_for(lambda: open_connections(program) == 0), "slots of clients that left early were not given back"


def test_connections_from_threads_keep_their_own_requests(port: int) -> None:
    """Several keep-alive clients interleaving requests get each their own bodies (no shared buffers)."""
    errors: list[str] = []

    def client(index: int) -> None:
        with HttpConnection(HOST, port, timeout=10) as conn:
            for request in range(30):
                size = 100 + index * 1000 + request
                body = conn.get(f"/dl/{size}").body
                if body != dl_pattern(size):
                    errors.append(f"client {index} request {request}: {len(body)} B")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
