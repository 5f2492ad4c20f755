"""`tls get <url>` of the firmware's C services (firmware/services/src/tls_get.c) against real HTTPS servers.

The servers are the lab's own HTTPS peer (`harness.lab.peers.TlsHttpServer`, Python's ssl) bound to loopback
addresses, and the program's own HTTPS server; the program runs its ASan/UBSan build.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from harness.lab.peers import LAB_SERVER, WRONG_HOST, CertPair, TlsHttpServer
from harness.services_program import ServicesProgram, check_clean_exit

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (apt-get install gcc)")

T = TypeVar("T")


class _Here:
    """This network namespace, with the `call` a lab namespace offers."""

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None, **kwargs: Any) -> T:
        return fn(*args, **kwargs)


@dataclass
class _LoopbackAddressing:
    host_ip: str


@dataclass
class LoopbackLab:
    """What `TlsHttpServer` needs of a lab, on a loopback address instead of the lab's host address."""

    address: str
    host: _Here = field(default_factory=_Here)

    @property
    def addressing(self) -> _LoopbackAddressing:
        return _LoopbackAddressing(self.address)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def program() -> Iterator[ServicesProgram]:
    services = ServicesProgram(["--https", "0"])
    with services:
        yield services
        check_clean_exit(services)


def https_peer(address: str, cert: CertPair) -> TlsHttpServer:
    return TlsHttpServer(LoopbackLab(address), free_port(), cert).start()  # type: ignore[arg-type]


def test_get_from_a_server_whose_certificate_names_the_address(program: ServicesProgram) -> None:
    server = https_peer("127.0.0.1", LAB_SERVER)
    try:
        url = f"{server.url}/dl/100000"
        reply = program.command(f"tls get {url}")
    finally:
        server.stop()
    assert reply["ok"], reply
    assert (reply["cmd"], reply["url"], reply["status"], reply["bytes"]) == ("tls", url, 200, 100_000)
    assert reply["duration_ms"] >= 0 and server.requests == 1


@pytest.mark.parametrize(("address", "cert", "why"), [
    ("127.0.0.1", WRONG_HOST, "a certificate for another host name"),
    ("127.0.0.2", LAB_SERVER, "an address the certificate does not name"),
])  # fmt: skip
def test_get_refuses_a_certificate_for_another_host(program: ServicesProgram, address: str, cert: CertPair,
                                                    why: str) -> None:  # fmt: skip
    server = https_peer(address, cert)
    try:
        reply = program.command(f"tls get {server.url}/dl/16")
    finally:
        server.stop()
    assert not reply["ok"] and reply["error"] == "ESP_ERR_HTTP_CONNECT", f"{why}: {reply}"
    assert reply["url"] == f"{server.url}/dl/16"
    assert server.requests == 0 and server.handshake_failures == 1, f"{why}: the handshake must fail"
    assert "certificate" in program.log_text()


def test_get_from_its_own_server_by_name_counts_a_chunked_body(program: ServicesProgram) -> None:
    port = program.tcp_port("https")
    reply = program.command(f"tls get https://localhost:{port}/dl/100000?chunked=1")
    assert (reply["ok"], reply["status"], reply["bytes"]) == (True, 200, 100_000), reply
    reply = program.command(f"tls get https://127.0.0.1:{port}/nope")
    assert (reply["ok"], reply["status"]) == (True, 404), "an HTTP error status is still a completed GET"


@pytest.mark.parametrize(("line", "error"), [
    ("tls get", "usage: tls get <https-url>"),
    ("tls get http://127.0.0.1/dl/1", "usage: tls get <https-url>"),
    ("tls put https://127.0.0.1/", "usage: tls get <https-url>"),
    ("tls get https://", "ESP_ERR_INVALID_ARG"),
    ("tls get https://127.0.0.1:99999/", "ESP_ERR_INVALID_ARG"),
])  # fmt: skip
def test_bad_arguments(program: ServicesProgram, line: str, error: str) -> None:
    reply = program.command(line)
    assert (reply["cmd"], reply["ok"], reply["error"]) == ("tls", False, error)


def test_a_closed_port_is_a_connect_error(program: ServicesProgram) -> None:
    reply = program.command(f"tls get https://127.0.0.1:{free_port()}/")
    assert (reply["ok"], reply["error"]) == (False, "ESP_ERR_HTTP_CONNECT")


def test_a_server_that_never_answers_the_handshake_times_out(program: ServicesProgram) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        reply = program.command(f"tls get https://127.0.0.1:{silent.getsockname()[1]}/", timeout=30)
    assert (reply["ok"], reply["error"]) == (False, "ESP_ERR_HTTP_CONNECT")
    assert "handshake" in program.log_text()


def test_without_a_ca_there_is_nothing_to_verify_against() -> None:
    with ServicesProgram(["--http", "0"], certs=False, sanitized=False) as bare:
        reply = bare.command("tls get https://127.0.0.1/")
    assert (reply["ok"], reply["error"]) == (False, "ESP_ERR_INVALID_STATE")
