"""TLS: the DUT's HTTPS server (443, certificate from firmware/certs) and its `tls get` client.

Host-side clients trust only the HIL test CA and expect the host name `hil-dut` (PROTOCOL.md). The DUT's
client fetches from HTTPS servers in the lab: one with the lab certificate (must verify), one with a
certificate for another host name (must be rejected on the name alone).
"""

from __future__ import annotations

import socket
import ssl
import time
import warnings
from typing import Any

import pytest

from harness.boards.board import Board
from harness.lab.peers import client_context
from harness.lab.traffic import percentile

HTTPS_PORT = 443
DUT_NAME = "hil-dut"
HANDSHAKES = 10
MAX_TLS_DOWNLOAD = 4_000_000
TLS_GET_BYTES = 100_000
_PATTERN = bytes(range(256)) * 256


def _connect(ip: str, context: ssl.SSLContext, session: ssl.SSLSession | None = None) -> tuple[ssl.SSLSocket, float]:
    """TCP connect plus TLS handshake; returns the socket and the seconds both took."""
    started = time.perf_counter()
    raw = socket.create_connection((ip, HTTPS_PORT), timeout=10)
    try:
        tls = context.wrap_socket(raw, server_hostname=DUT_NAME, session=session)
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        raise AssertionError(f"the DUT's HTTPS certificate does not verify as `{DUT_NAME}` against the HIL test CA: "
                             f"{exc.verify_message}") from exc  # fmt: skip
    except BaseException:
        raw.close()
        raise
    return tls, time.perf_counter() - started


def _get(tls: ssl.SSLSocket, path: str) -> tuple[int, int, bool]:
    """GET ``path`` on an open connection (Connection: close); returns status, body bytes, body matches i mod 256."""
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {DUT_NAME}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            raise AssertionError(f"the DUT closed the HTTPS connection before its headers ({data[:80]!r})")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status = int(head.split()[1])
    received, intact = 0, True
    while True:
        if body:
            offset = received % 256
            intact = intact and body == (_PATTERN[offset:] + _PATTERN * (len(body) // len(_PATTERN) + 1))[: len(body)]
            received += len(body)
        body = tls.recv(256 * 1024)
        if not body:
            return status, received, intact


def test_https_download(board: Board, lab: Any, dut_ip: str, hil_config: Any, metrics: Any, request: Any) -> None:
    """GET /dl/<n> over TLS: complete, byte-exact; the rate is recorded."""
    nbytes = min(request.config.option.dl_bytes, MAX_TLS_DOWNLOAD)

    def run() -> tuple[int, int, bool, float, str]:
        tls, _ = _connect(dut_ip, client_context())
        with tls:
            started = time.perf_counter()
            status, received, intact = _get(tls, f"/dl/{nbytes}")
            return status, received, intact, time.perf_counter() - started, str(tls.version())

    status, received, intact, seconds, version = lab.host.call(run, timeout=120)
    assert status == 200, f"GET /dl/{nbytes} over HTTPS answered {status}"
    assert received == nbytes, f"HTTPS download ended after {received} of {nbytes} bytes"
    assert intact, "the HTTPS download's body differs from the i mod 256 pattern"
    metrics.record("tls_download_mbps", nbytes * 8 / seconds / 1e6, "Mbit/s", "higher")
    print(f"{version}, {nbytes} B in {seconds:.3f} s")


def test_https_handshake(board: Board, lab: Any, dut_ip: str, metrics: Any) -> None:
    """Full handshakes (new sessions) and, when the server offers it, session resumption."""

    def run() -> tuple[list[float], list[float], bool]:
        context = client_context()
        full = []
        for _ in range(HANDSHAKES):
            tls, seconds = _connect(dut_ip, context)
            full.append(seconds * 1000)
            tls.close()
        # Resumption: a session (ticket) arrives after the handshake, so finish one request first.
        tls, _ = _connect(dut_ip, context)
        _get(tls, "/dl/16")
        session = tls.session
        tls.close()
        resumed, supported = [], False
        for _ in range(HANDSHAKES):
            tls, seconds = _connect(dut_ip, context, session=session)
            if tls.session_reused:
                supported = True
                resumed.append(seconds * 1000)
            tls.close()
        return full, resumed, supported

    full, resumed, supported = lab.host.call(run, timeout=60)
    metrics.record("tls_handshake_p50_ms", percentile(full, 50), "ms", "lower")
    metrics.record("tls_handshake_p99_ms", percentile(full, 99), "ms", "lower")
    metrics.record("tls_resumption_supported", 1 if supported else 0, "bool", "higher")
    if resumed:
        metrics.record("tls_resumed_handshake_p50_ms", percentile(resumed, 50), "ms", "lower")


def _only_rsa_key_exchange() -> ssl.SSLContext:
    context = client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-SHA256")  # RSA key exchange: impossible with the DUT's ECDSA key
    return context


def _only_tls_1_0() -> ssl.SSLContext:
    context = client_context()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let OpenSSL offer TLS 1.0 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated is the point of this client
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1
    return context


@pytest.mark.parametrize("offer", ["rsa_key_exchange_only", "tls1_0_only"])
def test_refuses_unsupported_client(board: Board, lab: Any, dut_ip: str, offer: str) -> None:
    """A client offering only what the server does not support gets a handshake failure, and the server lives on."""
    make = {"rsa_key_exchange_only": _only_rsa_key_exchange, "tls1_0_only": _only_tls_1_0}[offer]

    def attempt() -> str | None:
        try:
            tls, _ = _connect(dut_ip, make())
        except (ssl.SSLError, ConnectionError) as exc:
            return f"{type(exc).__name__}: {exc}"
        tls.close()
        return None

    refusal = lab.host.call(attempt, timeout=30)
    assert refusal is not None, f"the DUT's HTTPS server accepted a client offering {offer.replace('_', ' ')}"

    def still_serves() -> int:
        tls, _ = _connect(dut_ip, client_context())
        with tls:
            return _get(tls, "/dl/1000")[1]

    assert lab.host.call(still_serves, timeout=30) == 1000, "the HTTPS server stopped serving after the refusal"


def test_tls_get_verifies_lab_server(board: Board, dut_ip: str, tls_servers: dict[str, Any], metrics: Any) -> None:
    """`tls get` from the DUT to the lab's HTTPS server (certificate for the lab's address) succeeds."""
    url = f"{tls_servers['lab'].url}/dl/{TLS_GET_BYTES}"
    reply = board.command(f"tls get {url}", timeout=30)
    assert reply.get("ok"), f"`tls get {url}` failed on the DUT: {reply.get('error')}"
    assert (reply.get("status"), reply.get("bytes")) == (200, TLS_GET_BYTES), f"unexpected reply {reply}"
    metrics.record("tls_get_duration_ms", reply.get("duration_ms", 0), "ms", "lower")


def test_tls_get_rejects_wrong_host(board: Board, dut_ip: str, tls_servers: dict[str, Any]) -> None:
    """`tls get` to a server whose certificate (same CA) names another host fails, naming the error."""
    server = tls_servers["wrong_host"]
    failures_before = server.handshake_failures
    url = f"{server.url}/dl/16"
    reply = board.command(f"tls get {url}", timeout=30)
    assert not reply.get("ok"), f"the DUT accepted a certificate for another host name: `tls get {url}` -> {reply}"
    assert str(reply.get("error", "")).startswith("ESP_ERR_"), f"the error is not an ESP_ERR_ name: {reply}"
    assert server.requests == 0, "the DUT sent an HTTP request over a connection it should have refused"
    assert server.handshake_failures > failures_before, "the DUT never reached the wrong-host server"
