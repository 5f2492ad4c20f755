"""TLS on the virtual board: the HTTPS server on 443 (esp_https_server) and `tls get <url>` (esp_http_client).

The server presents `firmware/certs/dut_server.crt` (TLS 1.2/1.3) and serves the same routes as port 80;
the `tls_wrong_cert` fault makes it present the wrong-hostname certificate instead. `tls get` verifies
the peer against the HIL test CA including the host name, and names failures like esp_http_client does.
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from harness.boards.virtual.httpd import HilHttpServer
from harness.boards.virtual.registry import command, fault_mechanism, service
from harness.paths import certs_dir

if TYPE_CHECKING:
    from harness.boards.virtual.firmware import Firmware

fault_mechanism("tls_wrong_cert")  # catalogue faults (faults.py) this module implements


HTTPS_PORT = 443
USAGE = "usage: tls get <https-url>"
TIMEOUT_S = 10.0
HANDSHAKE_TIMEOUT_S = 10.0


def server_context(cert_name: str) -> ssl.SSLContext:
    """TLS 1.2/1.3 with the named certificate (ECDSA P-256), like hil_app's esp_https_server config."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certs_dir() / f"{cert_name}.crt"), str(certs_dir() / f"{cert_name}.key"))
    return context


class HilHttpsServer(HilHttpServer):
    """The HTTP routes over TLS; each connection does its handshake on its own thread, never the accept loop."""

    def __init__(self, port: int, stats_provider: Any, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(port, stats_provider)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a refused handshake (no shared cipher, old version) closes the connection, nothing more
        try:
            tls.settimeout(None)
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that leaves mid-response is not an error of the server


@service
def start_https(fw: Firmware) -> None:
    """Serve HTTPS on 443 from boot."""
    cert = "wrong_host" if fw.has_fault("tls_wrong_cert") else "dut_server"
    server = HilHttpsServer(HTTPS_PORT, fw.stats_snapshot, server_context(cert))
    server.start()
    fw.on_shutdown(server.server_close)


def _client_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs_dir() / "hil_test_ca.crt"))


@command("tls", "tls get <https-url>: GET verified against the HIL test CA")
def tls_command(fw: Firmware, args: list[str]) -> None:
    if len(args) != 2 or args[0] != "get" or not args[1].startswith("https://"):
        fw.result("tls", ok=False, error=USAGE)
        return
    url = args[1]
    parts = urlsplit(url)
    if not parts.hostname:
        fw.result("tls", ok=False, error="ESP_ERR_INVALID_ARG", url=url)
        return
    started = time.monotonic()
    connection = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=TIMEOUT_S,
                                             context=_client_context())  # fmt: skip
    try:
        try:
            connection.connect()
        except (ssl.SSLError, OSError):
            # esp_http_client reports a refused connection, a failed handshake and a bad host name alike.
            fw.result("tls", ok=False, error="ESP_ERR_HTTP_CONNECT", url=url)
            return
        try:
            connection.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
            response = connection.getresponse()
            nbytes = 0
            while chunk := response.read(65536):
                nbytes += len(chunk)
        except TimeoutError:
            fw.result("tls", ok=False, error="ESP_ERR_HTTP_EAGAIN", url=url)
            return
        except (OSError, http.client.HTTPException):
            fw.result("tls", ok=False, error="ESP_ERR_HTTP_FETCH_HEADER", url=url)
            return
    finally:
        connection.close()
    fw.result("tls", url=url, status=response.status, bytes=nbytes,
              duration_ms=int((time.monotonic() - started) * 1000))  # fmt: skip
