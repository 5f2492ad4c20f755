"""A small HTTP/1.1 and WebSocket (RFC 6455) client for scenarios, on plain sockets with timeouts.

Python's http.client hides what a scenario needs to see (keep-alive reuse, a raw malformed request,
the exact close of a connection), and the standard library has no WebSocket client, so this module
speaks both protocols itself. Every call is synchronous and bounded by the connection's timeout; run
it inside the lab's host namespace (`Namespace.call`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from dataclasses import dataclass, field

from harness.errors import DutTimeoutError, LabError
from harness.lab.netns import require_lab_namespace

DEFAULT_TIMEOUT_S = 5.0
MAX_HEADER_BYTES = 65536
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass
class Response:
    """One HTTP response.

    Attributes:
        status: the status code.
        headers: header names in lower case.
        body: the whole body (chunked bodies are decoded).
        seconds: from sending the request to the last body byte.
        closed: the server closed the connection after this response.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    closed: bool = False
    chunks: int = 0


class HttpConnection:
    """One TCP connection to an HTTP server; requests on it reuse it (keep-alive) until either side closes.

    Args:
        host: server address.
        port: server port.
        timeout: seconds any single socket operation may take.
    """

    def __init__(self, host: str, port: int = 80, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        require_lab_namespace(host)
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise DutTimeoutError(f"cannot connect to http://{host}:{port}: {exc}") from exc
        self.sock.settimeout(timeout)
        self._buffer = b""
        self.peer_closed = False

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def __enter__(self) -> HttpConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------------------------------------

    def get(self, path: str, *, keep_alive: bool = True, extra_headers: dict[str, str] | None = None) -> Response:
        """GET ``path`` and read the whole response."""
        headers = {"Host": self.host, "Connection": "keep-alive" if keep_alive else "close", **(extra_headers or {})}
        head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        return self.request_raw(head.encode())

    def request_raw(self, data: bytes, *, half_close: bool = False) -> Response:
        """Send ``data`` as-is (it may be malformed) and read one response.

        Args:
            data: the bytes of the request.
            half_close: shut down our sending side after ``data`` (a request that ends early).

        Raises:
            LabError: the server closed the connection without answering (message says so).
            DutTimeoutError: no complete response within the timeout.
        """
        started = time.monotonic()
        try:
            self.sock.sendall(data)
            if half_close:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise LabError(f"sending the request to {self.host}:{self.port} failed: {exc}") from exc
        status, headers = self._read_head()
        body, chunks = self._read_body(headers)
        closed = headers.get("connection", "").lower() == "close"
        return Response(status, headers, body, time.monotonic() - started, closed=closed, chunks=chunks)

    # --- reading -------------------------------------------------------------------------------------------

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(65536)
        except TimeoutError as exc:
            raise DutTimeoutError(f"no data from {self.host}:{self.port} for {self.timeout:g} s") from exc
        except ConnectionResetError as exc:
            raise LabError(f"{self.host}:{self.port} reset the connection") from exc
        if not data:
            self.peer_closed = True
        return data

    def _fill_until(self, marker: bytes, limit: int) -> int:
        while (index := self._buffer.find(marker)) < 0:
            if len(self._buffer) > limit:
                raise LabError(f"more than {limit} bytes without {marker!r} from {self.host}:{self.port}")
            data = self._recv()
            if not data:
                raise LabError(
                    f"{self.host}:{self.port} closed the connection without a complete response "
                    f"(got {self._buffer[:80]!r})"
                )
            self._buffer += data
        return index

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            data = self._recv()
            if not data:
                raise LabError(f"{self.host}:{self.port} closed the connection {n - len(self._buffer)} bytes early")
            self._buffer += data
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _read_head(self) -> tuple[int, dict[str, str]]:
        end = self._fill_until(b"\r\n\r\n", MAX_HEADER_BYTES)
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        status_line, *lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise LabError(f"malformed HTTP status line from {self.host}:{self.port}: {status_line!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    def _read_body(self, headers: dict[str, str]) -> tuple[bytes, int]:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                end = self._fill_until(b"\r\n", 1024)
                size_text = self._take(end + 2)[:-2].split(b";")[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError as exc:
                    raise LabError(f"malformed chunk size {size_text!r} from {self.host}:{self.port}") from exc
                if size == 0:
                    self._take(self._fill_until(b"\r\n", 1024) + 2)  # no trailers expected: the final CRLF
                    return b"".join(parts), len(parts)
                parts.append(self._take(size))
                if self._take(2) != b"\r\n":
                    raise LabError(f"chunk of {size} bytes from {self.host}:{self.port} not followed by CRLF")
        if "content-length" in headers:
            return self._take(int(headers["content-length"])), 0
        # No length: the body runs until the server closes.
        while (data := self._recv()) != b"":
            self._buffer += data
        body, self._buffer = self._buffer, b""
        return body, 0

    def wait_closed(self, timeout: float) -> bool:
        """Whether the server closes the connection (EOF or reset) within ``timeout`` s, sending nothing more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            except ConnectionResetError:
                return True
            finally:
                self.sock.settimeout(self.timeout)
            if not data:
                return True
            self._buffer += data
        return False


# --- WebSocket ---------------------------------------------------------------------------------------------


@dataclass
class WsMessage:
    """One received WebSocket frame."""

    opcode: int
    payload: bytes
    fin: bool = True

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame (None for other frames or an empty close)."""
        if self.opcode != WS_CLOSE or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])


@dataclass
class WebSocket:
    """A client WebSocket on an `HttpConnection` whose handshake succeeded."""

    conn: HttpConnection
    handshake_s: float
    received: list[WsMessage] = field(default_factory=list)

    @classmethod
    def connect(cls, host: str, port: int = 80, path: str = "/ws", timeout: float = DEFAULT_TIMEOUT_S) -> WebSocket:
        """Open a connection and perform the RFC 6455 opening handshake (accept key checked)."""
        conn = HttpConnection(host, port, timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        started = time.monotonic()
        try:
            conn.sock.sendall(request.encode())
            status, headers = conn._read_head()
        except BaseException:
            conn.close()
            raise
        expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if status != 101 or headers.get("sec-websocket-accept") != expected:
            conn.close()
            raise LabError(
                f"WebSocket handshake on {host}:{port}{path} failed: HTTP {status}, "
                f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r} (expected {expected!r})"
            )
        return cls(conn, time.monotonic() - started)

    def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        """Send one masked frame (clients must mask, RFC 6455 5.3)."""
        mask = os.urandom(4)
        n = len(payload)
        first = (0x80 if fin else 0) | opcode
        if n < 126:
            header = struct.pack("!BB", first, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", first, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, n)
        self.conn.sock.sendall(header + mask + mask_payload(payload, mask))

    def receive(self) -> WsMessage:
        """Read one frame from the server (server frames are not masked)."""
        head = self.conn._take(2)
        fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
        if head[1] & 0x80:
            raise LabError("the server sent a masked WebSocket frame (RFC 6455 5.1 forbids it)")
        length = head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.conn._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.conn._take(8))
        message = WsMessage(opcode, self.conn._take(length), fin)
        self.received.append(message)
        return message

    def echo(self, opcode: int, payload: bytes) -> tuple[WsMessage, float]:
        """Send one message and read the reply; return it with the round-trip time in seconds."""
        started = time.monotonic()
        self.send(opcode, payload)
        reply = self.receive()
        return reply, time.monotonic() - started

    def close(self, code: int = 1000) -> WsMessage | None:
        """Send a close frame, read the server's close (if it answers) and close the connection."""
        try:
            self.send(WS_CLOSE, struct.pack("!H", code))
            reply = self.receive()
        except (LabError, DutTimeoutError, OSError):
            reply = None
        self.conn.close()
        return reply


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated (RFC 6455 5.3); the same call unmasks."""
    if not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def dl_pattern(nbytes: int) -> bytes:
    """The body `GET /dl/<n>` must return: byte i is i mod 256 (PROTOCOL.md)."""
    return (bytes(range(256)) * (nbytes // 256 + 1))[:nbytes]
