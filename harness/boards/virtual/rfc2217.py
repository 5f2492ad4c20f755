"""An RFC2217 server for the virtual board's console, with the USB-serial bridge's DTR/RTS auto-reset circuit.

On a devkit the bridge's DTR and RTS drive EN and IO0 through two transistors, so esptool can reset the
chip into download mode and back without anyone pressing buttons. This module serves the board's pty
over RFC2217 (pyserial's server-side `serial.rfc2217.PortManager`) and feeds DTR/RTS into a model of
that circuit, which asks the board's control channel for a reset, a download-mode reset or a hold:

- EN is low while RTS is asserted and DTR is not; IO0 is low while DTR is asserted and RTS is not
  (both asserted or both released leave both high, so opening a port does not reset the chip).
- When EN rises the chip boots into download mode if IO0 is low then or goes low within
  ``STRAP_WINDOW_S`` (the EN RC delay on the board: esptool's sequential classic reset raises EN a few
  milliseconds before it pulls IO0 low); otherwise it boots from flash.

It listens on 127.0.0.1 only (port chosen by the OS) and serves one client at a time, as
``esp_rfc2217_server`` does. Point esptool at ``rfc2217://127.0.0.1:PORT``: this server acknowledges every
SET_CONTROL, so pyserial's ``?ign_set_control`` (which replaces waiting for the acknowledgement by a fixed
0.1 s sleep per DTR/RTS change) only makes resets slower.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import threading
from collections.abc import Callable

import serial.rfc2217

log = logging.getLogger(__name__)

STRAP_WINDOW_S = 0.15
ACCEPT_POLL_S = 0.2
_READ_CHUNK = 65536


class AutoResetCircuit:
    """DTR/RTS in, EN/IO0 events out.

    Args:
        hold: called when EN goes low (the chip stops).
        boot: called with ``download=True/False`` once the chip leaves reset.
        strap_window_s: how long after EN rises a falling IO0 still selects download mode.
    """

    def __init__(self, hold: Callable[[], None], boot: Callable[[bool], None], strap_window_s: float = STRAP_WINDOW_S):
        self._hold = hold
        self._boot = boot
        self._window = strap_window_s
        self._lock = threading.RLock()
        self.dtr = False
        self.rts = False
        self._pending: threading.Timer | None = None
        self.resets: list[str] = []  # what the circuit did, for status and tests

    @property
    def en_low(self) -> bool:
        """EN is held low (chip in reset)."""
        return self.rts and not self.dtr

    @property
    def io0_low(self) -> bool:
        """IO0 is pulled low (download strap)."""
        return self.dtr and not self.rts

    def set_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> None:
        """Apply a DTR and/or RTS change and act on the EN/IO0 edges it causes."""
        with self._lock:
            was_en_low = self.en_low
            if dtr is not None:
                self.dtr = dtr
            if rts is not None:
                self.rts = rts
            if self.en_low and not was_en_low:
                self._cancel_pending()
                self._hold()
            elif was_en_low and not self.en_low:
                if self.io0_low:
                    self._release(True)
                else:
                    self._pending = threading.Timer(self._window, self._strap_timeout)
                    self._pending.daemon = True
                    self._pending.start()
            elif self._pending is not None and self.io0_low:
                self._cancel_pending()
                self._release(True)

    def _strap_timeout(self) -> None:
        with self._lock:
            if self._pending is None or self._pending is not threading.current_thread():
                return
            self._pending = None
            self._release(False)

    def _release(self, download: bool) -> None:
        self.resets.append("download" if download else "reset")
        self._boot(download)

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def close(self) -> None:
        """Drop a pending strap decision."""
        with self._lock:
            self._cancel_pending()


class PtyPort:
    """The Serial-like object PortManager drives: bytes to and from the pty, DTR/RTS into the circuit."""

    def __init__(self, path: str, circuit: AutoResetCircuit) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.circuit = circuit
        self.name = path
        # Line settings are accepted and reported back; a pty moves bytes at any speed.
        self.baudrate = 115200
        self.bytesize = 8
        self.parity = "N"
        self.stopbits = 1
        self.xonxoff = False
        self.rtscts = False
        self.break_condition = False
        self.cts = self.dsr = self.ri = False
        self.cd = True

    @property
    def dtr(self) -> bool:
        """DTR as last set by the client."""
        return self.circuit.dtr

    @dtr.setter
    def dtr(self, value: bool) -> None:
        self.circuit.set_lines(dtr=bool(value))

    @property
    def rts(self) -> bool:
        """RTS as last set by the client."""
        return self.circuit.rts

    @rts.setter
    def rts(self, value: bool) -> None:
        self.circuit.set_lines(rts=bool(value))

    def write(self, data: bytes) -> int:
        """Send bytes to the board's UART (waits while the pty buffer is full, up to 5 s)."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                if not select.select([], [self.fd], [], 5.0)[1]:
                    raise TimeoutError("the virtual board's UART did not take data for 5 s") from None
        return len(data)

    def read_available(self) -> bytes:
        """Whatever the board printed since the last call (b"" if nothing)."""
        try:
            return os.read(self.fd, _READ_CHUNK)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # the board side is gone
                return b""
            raise

    def reset_input_buffer(self) -> None:
        """Drop what the board printed and nobody read yet."""
        while self.read_available():
            pass

    def reset_output_buffer(self) -> None:
        """Nothing to drop: writes go straight into the pty."""

    def close(self) -> None:
        """Close the pty end."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _Connection:
    """The network side PortManager writes telnet replies to (thread safe)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock, contextlib.suppress(OSError):
            self.sock.sendall(data)


class Rfc2217Server:
    """Serves one board's pty over RFC2217 on 127.0.0.1.

    Args:
        pty_path: the board's console (the slave side of its pty).
        control: sends one control request to the board, e.g. ``control("download")``.
        strap_window_s: see `AutoResetCircuit`.
    """

    def __init__(
        self, pty_path: str, control: Callable[[str], object], *, strap_window_s: float = STRAP_WINDOW_S
    ) -> None:
        self.pty_path = pty_path
        self.control = control
        self.circuit = AutoResetCircuit(
            hold=lambda: self._control("hold"),
            boot=lambda download: self._control("download" if download else "reset"),
            strap_window_s=strap_window_s,
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The URL esptool and pyserial take."""
        return f"rfc2217://127.0.0.1:{self.port}"

    def _control(self, op: str) -> None:
        try:
            self.control(op)
        except Exception as exc:  # a failed reset must not take the serial link down
            log.warning("virtual board control %s failed: %s", op, exc)

    def start(self) -> Rfc2217Server:
        """Accept clients on a background thread."""
        self._thread = threading.Thread(target=self._serve, name="rfc2217", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        self._listener.settimeout(ACCEPT_POLL_S)
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._serve_client(sock)
            except OSError as exc:
                log.info("RFC2217 client ended: %s", exc)
            finally:
                sock.close()

    def _serve_client(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port = PtyPort(self.pty_path, self.circuit)
        connection = _Connection(sock)
        manager = serial.rfc2217.PortManager(port, connection)
        done = threading.Event()
        pump = threading.Thread(target=self._board_to_client, args=(port, manager, connection, done), daemon=True)
        pump.start()
        try:
            while not self._stop.is_set():
                if not select.select([sock], [], [], ACCEPT_POLL_S)[0]:
                    continue
                data = sock.recv(_READ_CHUNK)
                if not data:
                    break
                payload = b"".join(manager.filter(data))
                if payload:
                    port.write(payload)
        finally:
            done.set()
            pump.join(timeout=2)
            port.close()
            # Closing a USB-serial port releases DTR and RTS: EN and IO0 go high.
            self.circuit.set_lines(dtr=False, rts=False)

    @staticmethod
    def _board_to_client(
        port: PtyPort, manager: serial.rfc2217.PortManager, connection: _Connection, done: threading.Event
    ) -> None:
        while not done.is_set():
            if not select.select([port.fd], [], [], ACCEPT_POLL_S)[0]:
                continue
            data = port.read_available()
            if data:
                connection.write(b"".join(manager.escape(data)))

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        self._stop.set()
        self.circuit.close()
        self._listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
