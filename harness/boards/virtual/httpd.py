"""The virtual board's HTTP endpoints, behaving like hil_app's esp_http_server handlers.

`GET /dl/<n>` streams n bytes with Content-Length (the endpoint behind the 91.15 Mbit/s figure),
`POST /ul` consumes the body and reports bytes and duration, `GET /stats` returns the HIL_STATS object,
`GET /ws` is the RFC 6455 WebSocket echo. Malformed requests get the error esp_http_server sends
(400, 431, 501, 505) and the connection is closed, like `httpd_req_handle_err`.

Faults (firmware/PROTOCOL.md is unchanged by them; see faults.py for the catalogue):
- `heap_leak_per_connection`: every accepted connection leaks 32 KiB of heap.
- `panic_on_nth_connection`: the 20th accepted connection since boot panics the chip.
- `httpd_malformed_crash`: a malformed request panics the chip instead of being answered with an error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from harness.boards.virtual.registry import fault_mechanism

if TYPE_CHECKING:
    from harness.boards.virtual.firmware import Firmware

fault_mechanism("heap_leak_per_connection", "panic_on_nth_connection", "httpd_malformed_crash")


CHUNK = 64 * 1024
SEND_BUFFER_BYTES = 4 * 1024 * 1024
DL_CHUNKED_MAX = 8192  # PROTOCOL.md: chunks of at most 8192 bytes
DL_MAX = 10**12
# CONFIG_HTTPD_MAX_REQ_HDR_LEN in firmware/hil_app/sdkconfig.defaults: longer header blocks get 431.
MAX_REQ_HDR_LEN = 1024
# esp_http_server's recv_wait_timeout default: a client that stalls mid-request is dropped.
RECV_TIMEOUT_S = 5.0
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_MAX_MESSAGE = 16384  # PROTOCOL.md: larger messages close the connection with 1009
LEAK_BYTES_PER_CONNECTION = 32 * 1024
PANIC_CONNECTION_NUMBER = 20
_PAYLOAD = memoryview(bytes(range(256)) * (CHUNK // 256))
_DL_PATH = re.compile(r"^/dl/(\d{1,13})(\?.*)?$")
_CONTENT_LENGTH = re.compile(r"\d{1,20}")

# WebSocket opcodes (RFC 6455 5.2).
WS_CONTINUATION, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class _ReadTracker:
    """Wraps the request's input stream to notice a request that ends before its blank line."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.truncated = False

    def readline(self, size: int = -1) -> bytes:
        line = self._raw.readline(size)
        if not line.endswith(b"\n") and (size < 0 or len(line) < size):
            self.truncated = True  # end of stream inside (or instead of) a line
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class _Handler(BaseHTTPRequestHandler):
    server_version = "esp-httpd-virtual"
    protocol_version = "HTTP/1.1"
    timeout = RECV_TIMEOUT_S
    server: HilHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # requests are not console output on the real board either

    def setup(self) -> None:
        super().setup()
        self.rfile = _ReadTracker(self.rfile)  # type: ignore[assignment]
        # Headers and body leave in separate writes: without this, Nagle holds the body for the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # ~320 ms of wire time queued: a twin thread descheduled on a busy CI machine must not idle the link.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self.server.on_connection()

    def parse_request(self) -> bool:
        self.rfile.truncated = False  # type: ignore[attr-defined]
        if not super().parse_request():
            return False
        if self.rfile.truncated:  # type: ignore[attr-defined]
            self.send_error(HTTPStatus.BAD_REQUEST, "Request ended inside the headers")
            return False
        header_bytes = sum(len(name) + len(value) + 4 for name, value in self.headers.items())
        if header_bytes > MAX_REQ_HDR_LEN:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Header fields are too long")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code != HTTPStatus.NOT_FOUND and self.server.has_fault("httpd_malformed_crash"):
            self.server.crash("panic")
        # esp_http_server answers every error with an HTTP/1.1 status line, whatever version the client wrote.
        self.request_version = "HTTP/1.1"
        super().send_error(code, message, explain)

    def do_GET(self) -> None:
        match = _DL_PATH.match(self.path)
        if self.path.startswith("/dl/"):
            if match is None or int(match.group(1)) > DL_MAX:
                self.send_error(HTTPStatus.BAD_REQUEST, "expected /dl/<bytes>, 0..10^12")
                return
            self._download(int(match.group(1)), chunked="chunked=1" in (match.group(2) or ""))
        elif self.path == "/stats":
            self._json(self.server.stats_provider())
        elif self.path == "/ws":
            self._websocket()
        else:
            self.send_error(HTTPStatus.NOT_FOUND, "Not Found")

    def do_POST(self) -> None:
        if self.path != "/ul":
            self.send_error(HTTPStatus.NOT_FOUND, "Not Found")
            return
        length = self.headers.get("Content-Length", "0").strip()
        # http_parser rejects anything but digits, and values beyond 64 bits.
        if not _CONTENT_LENGTH.fullmatch(length) or int(length) >= 2**64:
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad Content-Length")
            return
        remaining = int(length)
        started = time.monotonic()
        buffer = bytearray(CHUNK)
        while remaining:
            got = self.rfile.readinto(memoryview(buffer)[: min(CHUNK, remaining)])
            if not got:
                self.close_connection = True
                return  # the client vanished mid-body: esp_http_server drops the session
            remaining -= got
        received = int(length) - remaining
        self._json({"bytes": received, "duration_us": int((time.monotonic() - started) * 1e6)})

    def _download(self, size: int, chunked: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        remaining = size
        step = DL_CHUNKED_MAX if chunked else CHUNK
        while remaining:
            part = _PAYLOAD[: min(step, remaining)]
            if chunked:
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            else:
                self.wfile.write(part)
            remaining -= len(part)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _json(self, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # --- WebSocket (RFC 6455) -----------------------------------------------------------------------------

    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "")
        upgrade = self.headers.get("Upgrade", "").lower()
        if upgrade != "websocket" or not key or self.headers.get("Sec-WebSocket-Version") != "13":
            self.send_error(HTTPStatus.BAD_REQUEST, "Not a WebSocket handshake")
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(HTTPStatus.SWITCHING_PROTOCOLS)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True  # after the WebSocket ends, the TCP connection ends too
        try:
            while self._websocket_frame():
                pass
        except (ConnectionError, TimeoutError, _WsProtocolError):
            return

    def _websocket_frame(self) -> bool:
        """Echo one frame; return False when the WebSocket is over."""
        self.connection.settimeout(None)  # an idle WebSocket stays open, as on esp_http_server
        head = self._read_exact(2)
        fin_opcode, mask_len = head[0], head[1]
        opcode = fin_opcode & 0x0F
        length = mask_len & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        if not mask_len & 0x80:
            self._ws_send(0x80 | WS_CLOSE, struct.pack("!H", 1002))  # client frames must be masked
            return False
        mask = self._read_exact(4)
        if length > WS_MAX_MESSAGE:
            self._ws_send(0x80 | WS_CLOSE, struct.pack("!H", 1009))
            return False
        payload = _unmask(self._read_exact(length), mask)
        if opcode == WS_CLOSE:
            self._ws_send(0x80 | WS_CLOSE, payload[:2])
            return False
        if opcode == WS_PING:
            self._ws_send(0x80 | WS_PONG, payload)
        elif opcode in (WS_TEXT, WS_BINARY, WS_CONTINUATION):
            self._ws_send(fin_opcode, payload)  # same FIN bit and opcode: fragments go back as fragments
        return True

    def _read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise _WsProtocolError("connection closed inside a frame")
        return data

    def _ws_send(self, first_byte: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", first_byte, n)
        elif n < 65536:
            header = struct.pack("!BBH", first_byte, 126, n)
        else:
            header = struct.pack("!BBQ", first_byte, 127, n)
        self.wfile.write(header + payload)
        self.wfile.flush()


class _WsProtocolError(Exception):
    pass


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


class HilHttpServer(ThreadingHTTPServer):
    """Threaded HTTP server.

    Args:
        port: TCP port (0: any free port).
        stats_provider: returns the current HIL_STATS fields.
        firmware: the running firmware twin, for its faults and its crash output (None: no faults).
        host: address to bind.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        port: int,
        stats_provider: Callable[[], dict[str, Any]],
        firmware: Firmware | None = None,
        host: str = "0.0.0.0",
    ) -> None:
        self.stats_provider = stats_provider
        self.firmware = firmware
        self.connections = 0
        self._leaked: list[bytes] = []
        self._lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()

    def start(self) -> threading.Thread:
        """Serve on a daemon thread."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="httpd", daemon=True)
        thread.start()
        return thread

    def has_fault(self, name: str) -> bool:
        """Whether the firmware runs with this fault."""
        return self.firmware is not None and self.firmware.has_fault(name)

    def on_connection(self) -> None:
        """Called for every accepted connection, on its handler thread."""
        with self._lock:
            self.connections += 1
            count = self.connections
            if self.has_fault("heap_leak_per_connection"):
                # A real leak: the bytes are written, so the process's resident memory (the twin's heap) grows.
                self._leaked.append(os.urandom(16) * (LEAK_BYTES_PER_CONNECTION // 16))
        if count == PANIC_CONNECTION_NUMBER and self.has_fault("panic_on_nth_connection"):
            self.crash("panic")

    def crash(self, kind: str) -> None:
        """Crash the chip from the httpd task (never returns)."""
        assert self.firmware is not None
        self.firmware.crash(kind, task="httpd")
