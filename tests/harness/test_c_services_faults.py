"""The catalogue faults that live in the C services (HIL_FAULTS), and the heap they must not leak without one."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl

import pytest

from harness.lab.http_client import HttpConnection, dl_pattern
from harness.lab.peers import client_context
from harness.services_program import ServicesProgram, check_clean_exit

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (apt-get install gcc)")

HOST = "127.0.0.1"
CRASH_EXIT_STATUS = 70
LEAK_BYTES = 32 * 1024


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def heap_min_free(port: int) -> int:
    return json.loads(get(port, "/stats")[1])["heap_min_free"]


def test_panic_on_nth_connection() -> None:
    with ServicesProgram(["--http", "0"], certs=False, faults=("panic_on_nth_connection",)) as program:
        port = program.tcp_port("http")
        for index in range(19):
            assert get(port, f"/dl/{index}")[1] == dl_pattern(index)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            get(port, "/dl/20")
        crash = program.wait_event(lambda e: e["event"] == "crash", timeout=10)
        assert (crash["kind"], crash["task"]) == ("panic", "httpd")
        assert program.close() == CRASH_EXIT_STATUS


def test_httpd_malformed_crash() -> None:
    with ServicesProgram(["--http", "0"], certs=False, faults=("httpd_malformed_crash",)) as program:
        port = program.tcp_port("http")
        assert get(port, "/nope")[0] == 404, "a 404 is no malformed request"
        with HttpConnection(HOST, port) as conn:
            conn.sock.sendall(b"FROB /stats HTTP/1.1\r\n\r\n")
            assert conn.wait_closed(5.0)
        assert program.wait_event(lambda e: e["event"] == "crash", timeout=10)["kind"] == "panic"
        assert program.close() == CRASH_EXIT_STATUS


def test_heap_leak_per_connection_shows_in_heap_min_free() -> None:
    with ServicesProgram(["--http", "0", "--stats-iface", "lo"], certs=False, sanitized=False,
                         faults=("heap_leak_per_connection",)) as program:  # fmt: skip
        port = program.tcp_port("http")
        before = heap_min_free(port)
        for _ in range(20):
            get(port, "/dl/64")
        drop = before - heap_min_free(port)
        check_clean_exit(program)
    assert drop >= 20 * LEAK_BYTES


def test_no_heap_is_lost_per_connection_without_the_fault() -> None:
    with ServicesProgram(["--http", "0", "--https", "0", "--stats-iface", "lo"], sanitized=False) as program:
        port = program.tcp_port("http")
        for _ in range(10):  # first-use allocations (thread stacks, TLS sessions) are not a leak
            get(port, "/dl/64")
        before = heap_min_free(port)
        for _ in range(200):
            get(port, "/dl/64")
        drop = before - heap_min_free(port)
        check_clean_exit(program)
    assert drop < 64 * 1024, f"heap_min_free fell by {drop} B over 200 connections"


def test_tls_wrong_cert_presents_another_host_name() -> None:
    with ServicesProgram(["--https", "0"], faults=("tls_wrong_cert",)) as program:
        raw = socket.create_connection((HOST, program.tcp_port("https")), timeout=10)
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate"):
            client_context().wrap_socket(raw, server_hostname="hil-dut")
        raw.close()
        check_clean_exit(program)
