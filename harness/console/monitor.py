"""Session-long console capture: one reader thread per board, a timestamped run log, per-test slices.

The monitor survives DUT resets and port hang-ups (it reopens the port), keeps every line in memory
with its host timestamp, and lets callers wait for lines or HIL_* machine lines with a timeout.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial

from harness.console.events import Event, LogParser
from harness.console.parse import MAX_LINE_BYTES, MAX_LINE_CHARS
from harness.console.protocol import MachineLine, parse_machine_line
from harness.console.sanitize import sanitize
from harness.errors import BoardError, DutTimeoutError

REOPEN_INTERVAL_S = 0.2


@dataclass(frozen=True)
class ConsoleLine:
    """One line of console output as received."""

    index: int
    host_time: float
    text: str
    machine: MachineLine | None


def clean_line(raw: bytes) -> str:
    """Decode a raw console line: undecodable bytes become U+FFFD; control characters (line endings
    included) and escape sequences go (:func:`harness.console.sanitize.sanitize`); at most
    ``MAX_LINE_CHARS`` characters are kept."""
    return sanitize(raw[:MAX_LINE_BYTES].decode("utf-8", errors="replace")).replace("\n", "")[:MAX_LINE_CHARS]


class ConsoleMonitor:
    """Reads a serial port (or pty, or rfc2217:// URL) for the whole session.

    Args:
        port: device path or pyserial URL.
        log_path: the run log; each line is written as ``<unix time> <text>``.
        baudrate: UART speed (a pty ignores it).
        on_bytes: optional callback receiving every chunk of raw bytes (the event parser).
    """

    def __init__(
        self,
        port: str,
        log_path: Path,
        *,
        baudrate: int = 115200,
        on_bytes: Callable[[bytes], None] | None = None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.log_path = log_path
        self.on_bytes = on_bytes
        self.lines: list[ConsoleLine] = []
        # Typed events (crashes, resets, links...); `lineno - 1` is the index into `lines`.
        self.events: list[Event] = []
        self._parser = LogParser(log_events=False)
        self._partial = b""
        self._cond = threading.Condition()
        self._serial: serial.SerialBase | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._log = None
        self.port_errors = 0

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self, open_timeout: float = 5.0) -> ConsoleMonitor:
        """Open the port and start capturing."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in stop()
        deadline = time.monotonic() + open_timeout
        while True:
            try:
                self._serial = self._open()
                break
            except (serial.SerialException, OSError) as exc:
                if time.monotonic() > deadline:
                    raise BoardError(
                        f"cannot open console port {self.port}: {exc}. Check the cable/port name (--port) and that no "
                        "other program (idf.py monitor, screen) holds it."
                    ) from exc
                time.sleep(REOPEN_INTERVAL_S)
        self._thread = threading.Thread(target=self._read_loop, name=f"console {self.port}", daemon=True)
        self._thread.start()
        return self

    def _open(self) -> serial.SerialBase:
        # exclusive=True keeps a second harness (or a monitor) from silently stealing half the bytes.
        port = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.1, do_not_open=True)
        if hasattr(port, "exclusive") and not self.port.startswith(("rfc2217://", "socket://")):
            port.exclusive = True
        port.open()
        return port

    def stop(self) -> None:
        """Stop capturing and close the port and the log (the partial last line is kept)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._partial:
            self._add_line(self._partial)
            self._partial = b""
        with self._cond:
            self.events.extend(self._parser.finish())
        if self._serial is not None:
            self._serial.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    # --- reading -----------------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                assert self._serial is not None
                data = self._serial.read(4096)
            except (serial.SerialException, OSError, TypeError):
                # A pty whose board restarted, or a USB bridge that re-enumerated: reopen.
                self.port_errors += 1
                self._reopen()
                continue
            if data:
                self._feed(data)

    def _reopen(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
        while not self._stop.wait(REOPEN_INTERVAL_S):
            try:
                self._serial = self._open()
                return
            except (serial.SerialException, OSError):
                continue

    def _feed(self, data: bytes) -> None:
        if self.on_bytes is not None:
            self.on_bytes(data)
        buffer = self._partial + data
        *complete, self._partial = buffer.split(b"\n")
        for raw in complete:
            self._add_line(raw)
        if len(self._partial) > MAX_LINE_BYTES:
            # A DUT printing without newlines: publish the line so far, so memory stays bounded.
            self._add_line(self._partial)
            self._partial = b""
        # A prompt is never newline-terminated: publish it so waits for it can complete.
        if self._partial.endswith(b"hil> "):
            self._add_line(self._partial)
            self._partial = b""

    def _add_line(self, raw: bytes) -> None:
        text = clean_line(raw)
        now = time.time()
        events = self._parser.feed(raw + b"\n")
        with self._cond:
            line = ConsoleLine(len(self.lines), now, text, parse_machine_line(text))
            self.lines.append(line)
            self.events.extend(events)
            self._cond.notify_all()
        if self._log is not None:
            self._log.write(f"{now:.6f} {text}\n")

    # --- queries -----------------------------------------------------------------------------------------

    def mark(self) -> int:
        """Index of the next line to arrive: pass it as ``since`` or to `slice`."""
        with self._cond:
            return len(self.lines)

    def slice(self, start: int, end: int | None = None) -> list[ConsoleLine]:
        """Lines from ``start`` to ``end`` (exclusive; default: everything so far)."""
        with self._cond:
            return self.lines[start:end]

    def write_slice(self, path: Path, start: int, end: int | None = None) -> Path:
        """Write a slice of the log, with host timestamps, to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            for line in self.slice(start, end):
                out.write(f"{line.host_time:.6f} {line.text}\n")
        return path

    def wait_for(
        self,
        predicate: Callable[[ConsoleLine], Any],
        *,
        since: int,
        timeout: float,
        what: str,
    ) -> ConsoleLine:
        """Wait until a line at or after ``since`` satisfies ``predicate``.

        Raises:
            DutTimeoutError: nothing matched within ``timeout`` seconds; the message names ``what``.
        """
        deadline = time.monotonic() + timeout
        index = since
        with self._cond:
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    index += 1
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = self.lines[-1].text if self.lines else "(nothing received)"
                    raise DutTimeoutError(
                        f"DUT did not print {what} within {timeout:g} s on {self.port}; last console line: {last!r}"
                    )
                self._cond.wait(remaining)

    def wait_for_text(
        self, pattern: str | re.Pattern[str], *, since: int, timeout: float, what: str | None = None
    ) -> tuple[ConsoleLine, re.Match[str]]:
        """Wait for a line matching the regular expression ``pattern``; return the line and the match."""
        regex = re.compile(pattern)
        line = self.wait_for(
            lambda ln: regex.search(ln.text), since=since, timeout=timeout, what=what or f"/{regex.pattern}/"
        )
        match = regex.search(line.text)
        assert match is not None
        return line, match

    def wait_for_machine(
        self,
        keyword: str,
        *,
        since: int,
        timeout: float,
        where: Callable[[dict[str, Any]], bool] | None = None,
        what: str | None = None,
    ) -> MachineLine:
        """Wait for a HIL_* line with ``keyword`` whose fields satisfy ``where``."""

        def matches(line: ConsoleLine) -> bool:
            m = line.machine
            return m is not None and m.keyword == keyword and (where is None or bool(where(m.fields)))

        line = self.wait_for(matches, since=since, timeout=timeout, what=what or keyword)
        assert line.machine is not None
        return line.machine

    def events_between(self, start: int, end: int | None = None) -> list[Event]:
        """Typed events that start at line index ``start`` or later (and before ``end``)."""
        with self._cond:
            stop = len(self.lines) if end is None else end
            return [event for event in self.events if start <= event.lineno - 1 < stop]

    # --- writing -----------------------------------------------------------------------------------------

    def send(self, line: str) -> None:
        """Type a command line on the console."""
        with self._write_lock:
            if self._serial is None:
                raise BoardError(f"console {self.port} is not open")
            try:
                self._serial.write((line + "\n").encode())
                self._serial.flush()
            except (serial.SerialException, OSError) as exc:
                raise BoardError(f"cannot write to console {self.port}: {exc}") from exc
