"""Session-long console capture: one reader thread per board, a timestamped run log, per-test slices.

The monitor survives DUT resets and port hang-ups (it reopens the port), keeps every line in memory
with its host timestamp, and lets callers wait for lines or HIL_* machine lines with a timeout. The raw
bytes, as they arrive, go to subscribers too (`subscribe`, `RawPipe`): pytest-embedded's `dut` expects on them.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
import time
from collections import deque
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
PIPE_POLL_S = 0.2


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
    """

    def __init__(self, port: str, log_path: Path, *, baudrate: int = 115200) -> None:
        self.port = port
        self.baudrate = baudrate
        self.log_path = log_path
        self._subscribers: tuple[Callable[[bytes], None], ...] = ()
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
        for subscriber in self._subscribers:
            subscriber(data)
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

    def subscribe(self, subscriber: Callable[[bytes], None]) -> None:
        """Call ``subscriber`` with every chunk of raw bytes from now on, on the reader thread (it must not block)."""
        with self._cond:
            self._subscribers = (*self._subscribers, subscriber)

    def unsubscribe(self, subscriber: Callable[[bytes], None]) -> None:
        """Stop calling ``subscriber``."""
        with self._cond:
            self._subscribers = tuple(known for known in self._subscribers if known is not subscriber)

    # --- writing -----------------------------------------------------------------------------------------

    def send(self, line: str) -> None:
        """Type a command line on the console."""
        self.write((line + "\n").encode())

    def write(self, data: bytes) -> None:
        """Write raw bytes to the console."""
        with self._write_lock:
            if self._serial is None:
                raise BoardError(f"console {self.port} is not open")
            try:
                self._serial.write(data)
                self._serial.flush()
            except (serial.SerialException, OSError) as exc:
                raise BoardError(f"cannot write to console {self.port}: {exc}") from exc


class RawPipe:
    """The console's raw bytes from the moment the pipe opens, to be read from a file descriptor (`fileno()`).

    A thread of its own moves the bytes into the pipe, so a reader that falls behind (a test between two
    `expect` calls) never holds up the monitor: what it has not read yet waits in memory. Closing (or leaving
    the ``with`` block) stops the thread and closes both ends; a reader that needs its end to outlive the pipe
    reads a `os.dup` of it.

    Args:
        monitor: the console to follow.
    """

    def __init__(self, monitor: ConsoleMonitor) -> None:
        self._monitor = monitor
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._pending: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name=f"console pipe {monitor.port}", daemon=True)
        self._thread.start()
        monitor.subscribe(self._take)

    def fileno(self) -> int:
        """The read end."""
        return self._read_fd

    def _take(self, data: bytes) -> None:
        with self._cond:
            self._pending.append(data)
            self._cond.notify()

    def _pump(self) -> None:
        unwritten = b""
        while True:
            with self._cond:
                while not unwritten and not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                unwritten += b"".join(self._pending)
                self._pending.clear()
            # Waits for room in the pipe a bounded time, so that close() is noticed even with nobody reading.
            _, writable, _ = select.select([], [self._write_fd], [], PIPE_POLL_S)
            if not writable:
                continue
            try:
                unwritten = unwritten[os.write(self._write_fd, unwritten) :]
            except BlockingIOError:
                continue
            except OSError:  # the read end is gone
                return

    def close(self) -> None:
        """Stop following the console and close the pipe; idempotent."""
        self._monitor.unsubscribe(self._take)
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2 * PIPE_POLL_S + 1)
        os.close(self._write_fd)
        os.close(self._read_fd)

    def __enter__(self) -> RawPipe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
