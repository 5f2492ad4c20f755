"""The virtual board's HTTP endpoints, behaving like hil_app's esp_http_server handlers.

`GET /dl/<n>` streams n bytes with Content-Length (the endpoint behind the 91.15 Mbit/s figure),
`POST /ul` consumes the body and reports bytes and duration, `GET /stats` returns the HIL_STATS object.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNK = 64 * 1024
_PAYLOAD = memoryview(bytes(range(256)) * (CHUNK // 256))
_DL_PATH = re.compile(r"^/dl/(\d{1,12})(\?.*)?$")


class _Handler(BaseHTTPRequestHandler):
    server_version = "esp-httpd-virtual"
    protocol_version = "HTTP/1.1"
    server: HilHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # requests are not console output on the real board either

    def do_GET(self) -> None:
        match = _DL_PATH.match(self.path)
        if match:
            self._download(int(match.group(1)), chunked="chunked=1" in (match.group(2) or ""))
        elif self.path == "/stats":
            self._json(self.server.stats_provider())
        else:
            self.send_error(404, "Not Found")

    def do_POST(self) -> None:
        if self.path != "/ul":
            self.send_error(404, "Not Found")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.send_error(411, "Length Required")
            return
        remaining = int(length)
        started = time.monotonic()
        buffer = bytearray(CHUNK)
        while remaining:
            got = self.rfile.readinto(memoryview(buffer)[: min(CHUNK, remaining)])
            if not got:
                break
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
        while remaining:
            part = _PAYLOAD[: min(CHUNK, remaining)]
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


class HilHttpServer(ThreadingHTTPServer):
    """Threaded HTTP server; ``stats_provider`` returns the current HIL_STATS fields."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, stats_provider: Callable[[], dict[str, Any]]) -> None:
        self.stats_provider = stats_provider
        super().__init__(("0.0.0.0", port), _Handler)

    def server_bind(self) -> None:
        # Large socket buffers like the firmware's 48 KiB TX buffers keep the 100 Mbit/s wire full.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()

    def start(self) -> threading.Thread:
        """Serve on a daemon thread."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="httpd", daemon=True)
        thread.start()
        return thread
