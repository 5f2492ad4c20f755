"""Application peers in the lab's host namespace: a mosquitto broker and TLS (HTTPS) servers.

Both listen only on the lab's host address, so nothing outside the run's namespaces can reach them.
The broker is the real mosquitto (a lab process, stopped at teardown); the HTTPS server is Python's
`ssl` over a small threaded HTTP server whose listening socket is created inside the host namespace.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness.errors import LabError
from harness.lab.base import Lab, ManagedProcess
from harness.lab.netns import require_lab_namespace, require_tools
from harness.paths import certs_dir

MQTT_PORT = 1883
MQTTS_PORT = 8883
READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CertPair:
    """A certificate and its key from firmware/certs (TEST ONLY keys)."""

    name: str

    @property
    def cert(self) -> Path:
        """The PEM certificate."""
        return certs_dir() / f"{self.name}.crt"

    @property
    def key(self) -> Path:
        """The PEM private key."""
        return certs_dir() / f"{self.name}.key"


TEST_CA = CertPair("hil_test_ca")
LAB_SERVER = CertPair("lab_server")
WRONG_HOST = CertPair("wrong_host")
DUT_SERVER = CertPair("dut_server")


def client_context() -> ssl.SSLContext:
    """A TLS client context that trusts only the HIL test CA and checks the host name."""
    return ssl.create_default_context(cafile=str(TEST_CA.cert))


def wait_for_port(lab: Lab, host: str, port: int, timeout: float = READY_TIMEOUT_S, what: str = "server") -> float:
    """Connect from the host namespace until ``host:port`` accepts; return the seconds it took."""

    def probe() -> float:
        require_lab_namespace(host)
        started = time.monotonic()
        deadline = started + timeout
        last: OSError | None = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=1.0):
                    return time.monotonic() - started
            except OSError as exc:
                last = exc
                time.sleep(0.05)  # polling a listener that is still starting; nothing to wait on instead
        raise LabError(f"{what} did not accept connections on {host}:{port} within {timeout:g} s: {last}")

    return lab.host.call(probe, timeout=timeout + 5)


class MosquittoBroker:
    """A real mosquitto broker in the lab's host namespace, listening on the host address only.

    Args:
        lab: the started lab.
        work_dir: where the config file goes (the run's artifacts).
        tls: also listen with TLS on 8883 (certificate `lab_server`, issued by the HIL test CA).
    """

    def __init__(self, lab: Lab, work_dir: Path, *, tls: bool = True) -> None:
        require_tools("mosquitto")
        self.lab = lab
        self.host = lab.addressing.host_ip
        self.port = MQTT_PORT
        self.tls_port = MQTTS_PORT if tls else None
        self.config_path = work_dir / "mosquitto.conf"
        self.process: ManagedProcess | None = None
        self.restarts = 0
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config())

    @property
    def uri(self) -> str:
        """The plain MQTT URI the DUT connects to."""
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> str:
        lines = [
            "# written by harness/lab/peers.py for one HIL run",
            "persistence false",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            # Started as root in a throw-away namespace: keep root so the TEST ONLY keys stay readable.
            "user root",
            # Without it Nagle's algorithm holds the broker's small packets (PUBREC, PUBREL, QoS 1/2
            # forwards) for the peer's delayed ACK: ~40 ms per step that has nothing to do with the DUT.
            "set_tcp_nodelay true",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
        ]
        if self.tls_port is not None:
            lines += [
                f"listener {self.tls_port} {self.host}",
                "allow_anonymous true",
                f"cafile {TEST_CA.cert}",
                f"certfile {LAB_SERVER.cert}",
                f"keyfile {LAB_SERVER.key}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> MosquittoBroker:
        """Start mosquitto and wait until it accepts connections."""
        if self.process is not None and self.process.alive():
            return self
        self.process = self.lab.spawn("mosquitto", ["mosquitto", "-c", str(self.config_path)])
        try:
            wait_for_port(self.lab, self.host, self.port, what="mosquitto")
        except LabError as exc:
            log = self.process.log_path.read_text(errors="replace")[-500:] if self.process.log_path else ""
            self.stop()
            raise LabError(f"{exc}; mosquitto log: {log!r}") from exc
        return self

    def stop(self) -> None:
        """Stop the broker (clients see the connection drop)."""
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        """Stop and start again (a broker restart: every client loses its session)."""
        self.stop()
        self.restarts += 1
        self.start()


class _LabHandler(BaseHTTPRequestHandler):
    """`GET /dl/<n>`: n bytes with byte i = i mod 256, like the DUT's own endpoint."""

    protocol_version = "HTTP/1.1"
    server_version = "hil-lab-https"
    _path = re.compile(r"^/dl/(\d{1,9})$")

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        match = self._path.match(self.path)
        if match is None:
            self.send_error(404, "Not Found")
            return
        size = int(match.group(1))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        pattern = bytes(range(256)) * 64
        while size:
            part = pattern[: min(len(pattern), size)]
            self.wfile.write(part)
            size -= len(part)


class TlsHttpServer(ThreadingHTTPServer):
    """An HTTPS server on the lab host address; the TLS handshake runs on the connection's own thread.

    Args:
        lab: the started lab (the listening socket is created inside its host namespace).
        port: TCP port.
        cert: which certificate to present (`LAB_SERVER` or `WRONG_HOST`).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, lab: Lab, port: int, cert: CertPair) -> None:
        self.cert = cert
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert.cert), str(cert.key))
        self.handshake_failures = 0
        self.requests = 0
        self.host, self.port = lab.addressing.host_ip, port
        self._thread: threading.Thread | None = None
        # The socket belongs to the namespace of the thread that creates it.
        lab.host.call(super().__init__, (self.host, port), _LabHandler, timeout=10)

    @property
    def url(self) -> str:
        """Base URL (by address: the lab certificate names 10.77.0.1)."""
        return f"https://{self.host}:{self.port}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10.0)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshake_failures += 1
            return
        try:
            self.requests += 1
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that goes away mid-response is not the server's problem

    def start(self) -> TlsHttpServer:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"lab-https-{self.port}", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()
