"""httpd: keep-alive and one-shot GETs, chunked download, concurrent clients, WebSocket echo, long and
malformed requests, and the heap watermark over many connections (esp_http_server on the DUT)."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.boards.board import Board
from harness.errors import DutTimeoutError, LabError
from harness.lab.http_client import (
    WS_BINARY,
    WS_CLOSE,
    WS_PING,
    WS_PONG,
    WS_TEXT,
    HttpConnection,
    WebSocket,
    dl_pattern,
)
from harness.lab.traffic import percentile

BODY_BYTES = 1024
REQUESTS = 40
CALL_TIMEOUT_S = 60


def _record_latency(metrics, prefix: str, seconds: list[float]) -> None:
    metrics.record(f"{prefix}_p50_ms", 1000 * percentile(seconds, 50), "ms", "lower")
    metrics.record(f"{prefix}_p99_ms", 1000 * percentile(seconds, 99), "ms", "lower")


def _check_dl(response, nbytes: int, what: str) -> None:
    assert response.status == 200, f"{what}: HTTP {response.status}"
    assert response.body == dl_pattern(nbytes), f"{what}: body of {len(response.body)} bytes differs from /dl/{nbytes}"


def _alive(dut_ip: str) -> None:
    """A fresh connection still gets /stats: the server survived whatever came before (call in the host namespace)."""
    with HttpConnection(dut_ip) as conn:
        response = conn.get("/stats", keep_alive=False)
    assert response.status == 200 and response.body.startswith(b"{"), f"GET /stats afterwards: HTTP {response.status}"


def test_keep_alive_and_one_shot_gets(board: Board, lab, dut_ip: str, metrics) -> None:
    """REQUESTS GETs on one kept-alive connection, then REQUESTS GETs each on its own connection."""

    def run() -> tuple[list[float], float, list[float], float]:
        kept: list[float] = []
        started = time.monotonic()
        with HttpConnection(dut_ip) as conn:
            for index in range(REQUESTS):
                response = conn.get(f"/dl/{BODY_BYTES}")
                _check_dl(response, BODY_BYTES, f"keep-alive request {index + 1}")
                assert not response.closed and not conn.peer_closed, (
                    f"the DUT closed the kept-alive connection after request {index + 1}"
                )
                kept.append(response.seconds)
        kept_total = time.monotonic() - started
        single: list[float] = []
        started = time.monotonic()
        for index in range(REQUESTS):
            t0 = time.monotonic()
            with HttpConnection(dut_ip) as conn:
                response = conn.get(f"/dl/{BODY_BYTES}", keep_alive=False)
                _check_dl(response, BODY_BYTES, f"one-shot request {index + 1}")
                assert conn.wait_closed(2.0), "the DUT kept the connection open after `Connection: close`"
            single.append(time.monotonic() - t0)
        return kept, kept_total, single, time.monotonic() - started

    kept, kept_total, single, single_total = lab.host.call(run, timeout=CALL_TIMEOUT_S)
    metrics.record("http_keepalive_req_per_s", REQUESTS / kept_total, "req/s", "higher")
    _record_latency(metrics, "http_keepalive_latency", kept)
    metrics.record("http_oneshot_req_per_s", REQUESTS / single_total, "req/s", "higher")
    _record_latency(metrics, "http_oneshot_latency", single)


def test_chunked_download(board: Board, lab, dut_ip: str, metrics) -> None:
    """`/dl/<n>?chunked=1` decodes to the same bytes, in chunks of at most 8192 bytes."""
    nbytes = 100_000

    def run():
        with HttpConnection(dut_ip, timeout=10) as conn:
            return conn.get(f"/dl/{nbytes}?chunked=1", keep_alive=False)

    response = lab.host.call(run, timeout=CALL_TIMEOUT_S)
    assert response.headers.get("transfer-encoding", "").lower() == "chunked", (
        f"no chunked transfer encoding: headers {response.headers}"
    )
    _check_dl(response, nbytes, "chunked download")
    assert response.chunks >= math.ceil(nbytes / 8192), f"{response.chunks} chunks: some exceed 8192 bytes"
    metrics.record("http_chunked_mbps", nbytes * 8 / response.seconds / 1e6, "Mbit/s", "higher")


def test_concurrent_clients(board: Board, lab, dut_ip: str, hil_config, metrics) -> None:
    """Several clients at once, each doing one-shot GETs; every response is complete and correct."""
    clients = hil_config.thresholds.httpd_concurrent_clients
    per_client = 10

    def client(index: int, start: threading.Barrier) -> list[float]:
        start.wait(timeout=10)
        latencies = []
        for request in range(per_client):
            with HttpConnection(dut_ip, timeout=10) as conn:
                response = conn.get(f"/dl/{BODY_BYTES}", keep_alive=False)
            _check_dl(response, BODY_BYTES, f"client {index} request {request + 1}")
            latencies.append(response.seconds)
        return latencies

    def run() -> tuple[list[float], float]:
        start = threading.Barrier(clients)
        began = time.monotonic()
        # Threads started here inherit this thread's network namespace.
        with ThreadPoolExecutor(max_workers=clients) as pool:
            results = list(pool.map(lambda i: client(i, start), range(clients)))
        return [t for r in results for t in r], time.monotonic() - began

    latencies, seconds = lab.host.call(run, timeout=CALL_TIMEOUT_S)
    metrics.record("http_concurrent_clients", clients, "clients", "higher")
    metrics.record("http_concurrent_req_per_s", len(latencies) / seconds, "req/s", "higher")
    _record_latency(metrics, "http_concurrent_latency", latencies)


WS_SIZES = (1, 125, 126, 1000, 4096, 16384)


def test_websocket_echo(board: Board, lab, dut_ip: str, metrics) -> None:
    """Text and binary messages of 1 B .. 16 KiB come back unchanged, ping gets pong, 64 KiB closes with 1009."""

    def run():
        ws = WebSocket.connect(dut_ip, timeout=10)
        rtts = []
        try:
            for size in WS_SIZES:
                for opcode in (WS_TEXT, WS_BINARY):
                    payload = (b"hil-ws " * (size // 7 + 1))[:size] if opcode == WS_TEXT else dl_pattern(size)
                    reply, rtt = ws.echo(opcode, payload)
                    assert reply.opcode == opcode and reply.payload == payload, (
                        f"WebSocket echo of a {size} B {'text' if opcode == WS_TEXT else 'binary'} message came back "
                        f"as opcode {reply.opcode} with {len(reply.payload)} B"
                    )
                    rtts.append(rtt)
            pong, _ = ws.echo(WS_PING, b"hil")
            assert pong.opcode == WS_PONG and pong.payload == b"hil", f"ping answered with opcode {pong.opcode}"
            # The DUT may close before it has read the whole message; its close frame is what counts.
            with contextlib.suppress(OSError):
                ws.send(WS_BINARY, bytes(65536))
            too_big = ws.receive()
        finally:
            ws.conn.close()
        return ws.handshake_s, rtts, too_big

    handshake_s, rtts, too_big = lab.host.call(run, timeout=CALL_TIMEOUT_S)
    assert too_big.opcode == WS_CLOSE and too_big.close_code == 1009, (
        f"a 64 KiB message got opcode {too_big.opcode} close code {too_big.close_code}; PROTOCOL.md says close 1009"
    )
    metrics.record("ws_handshake_ms", 1000 * handshake_s, "ms", "lower")
    _record_latency(metrics, "ws_echo_rtt", rtts)
    lab.host.call(_alive, dut_ip, timeout=CALL_TIMEOUT_S)


def test_long_header_line(board: Board, lab, dut_ip: str, metrics) -> None:
    """A 2 KiB header line is served, or refused with 431 when it exceeds the server's header buffer."""

    def run():
        with HttpConnection(dut_ip) as conn:
            response = conn.get(f"/dl/{BODY_BYTES}", keep_alive=False, extra_headers={"X-Hil-Long": "h" * 2048})
        _alive(dut_ip)
        return response

    response = lab.host.call(run, timeout=CALL_TIMEOUT_S)
    assert response.status in (200, 431), f"a 2 KiB header line was answered with HTTP {response.status}"
    if response.status == 200:
        _check_dl(response, BODY_BYTES, "GET with a 2 KiB header line")
    metrics.record("http_long_header_served", 1.0 if response.status == 200 else 0.0, "bool", "higher")


# A table of malformed requests: (id, bytes, half-close after sending, a silent close is an acceptable answer).
MALFORMED = [
    ("bad_method", b"FROB /stats HTTP/1.1\r\nHost: dut\r\n\r\n", False, False),
    ("bad_version", b"GET /stats HTTP/9.9\r\nHost: dut\r\n\r\n", False, False),
    ("garbage_version", b"GET /stats HXXP/1.1\r\nHost: dut\r\n\r\n", False, False),
    ("truncated_headers", b"GET /stats HTTP/1.1\r\nHost: dut\r\nX-Cut", True, True),
    ("content_length_negative", b"POST /ul HTTP/1.1\r\nHost: dut\r\nContent-Length: -5\r\n\r\n", False, False),
    ("content_length_overflow", b"POST /ul HTTP/1.1\r\nHost: dut\r\nContent-Length: 99999999999999999999999\r\n\r\n",
     False, False),
    ("content_length_text", b"POST /ul HTTP/1.1\r\nHost: dut\r\nContent-Length: lots\r\n\r\n", False, False),
    ("dl_size_absurd", b"GET /dl/99999999999999 HTTP/1.1\r\nHost: dut\r\n\r\n", False, False),
]  # fmt: skip


@pytest.mark.parametrize(("request_bytes", "half_close", "silent_ok"),
                         [pytest.param(*case[1:], id=case[0]) for case in MALFORMED])  # fmt: skip
def test_malformed_request(board: Board, lab, dut_ip: str, request_bytes: bytes, half_close: bool,
                           silent_ok: bool) -> None:  # fmt: skip
    """Answered with a 4xx/5xx error (or, for a request cut short, a close), never a crash; the server lives on."""

    def run():
        with HttpConnection(dut_ip) as conn:
            try:
                response = conn.request_raw(request_bytes, half_close=half_close)
            except LabError as exc:
                if silent_ok and conn.peer_closed:
                    return None
                raise AssertionError(f"the malformed request got no error response: {exc}") from exc
            except DutTimeoutError as exc:
                raise AssertionError(f"the malformed request got no answer at all: {exc}") from exc
        _alive(dut_ip)
        return response

    response = lab.host.call(run, timeout=CALL_TIMEOUT_S)
    if response is not None:
        assert 400 <= response.status <= 599, f"a malformed request was answered with HTTP {response.status}"


def test_heap_over_many_connections(board: Board, lab, dut_ip: str, hil_config, metrics) -> None:
    """heap_min_free must not fall by more than the budget over 200 connections (a per-connection leak shows)."""
    connections = 200
    budget = hil_config.thresholds.httpd_heap_drop_max_bytes

    def connect_many(count: int) -> float:
        started = time.monotonic()
        for _ in range(count):
            with HttpConnection(dut_ip) as conn:
                response = conn.get("/dl/64", keep_alive=False)
            _check_dl(response, 64, "GET /dl/64")
        return time.monotonic() - started

    lab.host.call(connect_many, 5, timeout=CALL_TIMEOUT_S)  # the server's first-use allocations are not a leak
    before = board.command("heap")
    seconds = lab.host.call(connect_many, connections, timeout=CALL_TIMEOUT_S)
    after = board.command("heap")
    drop = before["min_free"] - after["min_free"]
    metrics.record("http_heap_min_free_drop_bytes", drop, "B", "lower")
    metrics.record("http_heap_drop_per_connection_bytes", drop / connections, "B", "lower")
    metrics.record("http_connections_per_s", connections / seconds, "conn/s", "higher")
    assert drop <= budget, (
        f"heap_min_free fell by {drop} B over {connections} HTTP connections ({drop / connections:.0f} B per "
        f"connection; budget {budget} B): the DUT leaks heap per connection"
    )
