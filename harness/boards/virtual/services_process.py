"""Run the firmware's portable services (the ``hil-services`` host binary) as a child process.

The program prints one JSON "ready" line once every listener is bound (with the actual ports, so
port 0 works), answers ``stats`` on stdin with one JSON line, and exits on ``quit`` or when stdin
closes, so it cannot outlive its owner.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.boards.virtual.cbuild import build_services
from harness.errors import BoardError, DutTimeoutError
from harness.processes import spawn


@dataclass(frozen=True)
class SelectEchoPorts:
    """Ports asked of the select() echo service: TCP port, first UDP port, number of UDP sockets."""

    tcp: int
    udp_base: int
    udp_count: int


class ServicesProcess:
    """A running ``hil-services``; use as a context manager so it is always stopped.

    Args:
        iperf3: TCP port of the iperf3 server (0: any free port), or None to not run it.
        select_echo: ports of the select() echo service, or None.
        tcp_echo: TCP echo port, or None.
        udp_echo: UDP echo port, or None.
        netns: run inside this network namespace (``ip netns exec``); None for the current one.
        binary: the program to run; built on demand by default.
        ready_timeout_s: how long the services may take to bind.
        own_session: start it in a process group of its own (False: it is stopped with its parent's group).
            Either way it dies with the process that started it.
        faults: fault names for the C code (passed as HIL_FAULTS; names it does not know are ignored).
    """

    def __init__(
        self,
        *,
        iperf3: int | None = None,
        select_echo: SelectEchoPorts | None = None,
        tcp_echo: int | None = None,
        udp_echo: int | None = None,
        netns: str | None = None,
        binary: Path | None = None,
        ready_timeout_s: float = 10.0,
        own_session: bool = True,
        faults: tuple[str, ...] = (),
    ) -> None:
        args: list[str] = []
        if iperf3 is not None:
            args += ["--iperf3", str(iperf3)]
        if select_echo is not None:
            args += ["--select-echo", str(select_echo.tcp), str(select_echo.udp_base), str(select_echo.udp_count)]
        if tcp_echo is not None:
            args += ["--tcp-echo", str(tcp_echo)]
        if udp_echo is not None:
            args += ["--udp-echo", str(udp_echo)]
        if not args:
            raise ValueError("choose at least one service")
        self._args = args
        self._netns = netns
        self._binary = binary
        self._ready_timeout_s = ready_timeout_s
        # False when started by the virtual board's firmware: a reset kills its whole process group.
        self._own_session = own_session
        self._faults = tuple(faults)
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending = b""
        self._log: Any = None
        self.services: dict[str, dict[str, list[int]]] = {}
        self.last_log = ""

    @property
    def pid(self) -> int:
        """PID of the services program (inside ``ip netns exec`` it is the same process after exec)."""
        if self._proc is None:
            raise BoardError("hil-services is not running")
        return self._proc.pid

    def tcp_port(self, service: str) -> int:
        """The bound TCP port of a service (``iperf3``, ``select_echo``, ``tcp_echo``)."""
        return self.services[service]["tcp"][0]

    def udp_ports(self, service: str) -> list[int]:
        """The bound UDP ports of a service (``select_echo``, ``udp_echo``)."""
        return self.services[service]["udp"]

    def start(self) -> ServicesProcess:
        """Start the program and wait for its ready line."""
        binary = self._binary or build_services()
        cmd = [str(binary), *self._args, "--ready-timeout", str(max(1, int(self._ready_timeout_s)))]
        if self._netns:
            cmd = ["ip", "netns", "exec", self._netns, *cmd]
        # The log goes to a file, not a pipe: an unread pipe would fill up and stall the services.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        env = {**os.environ, "HIL_FAULTS": ",".join(self._faults)}
        self._proc = spawn(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, own_group=self._own_session, env=env
        )
        try:
            ready = self._read_json(self._ready_timeout_s + 5)
        except BoardError:
            self.close()
            raise
        if not ready.get("ready"):
            self.close()
            raise BoardError(f"hil-services did not start: {ready.get('error')}; its log: {self._stderr_tail()}")
        self.services = ready["services"]
        return self

    def stats(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The services' counters (``select_echo`` and ``iperf3`` objects)."""
        self._send(b"stats\n")
        return self._read_json(timeout_s)

    def close(self, timeout_s: float = 5.0) -> int | None:
        """Ask the program to quit, kill it if it does not, and return its exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                self._send(b"quit\n")
                proc.wait(timeout=timeout_s)
            except (BoardError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(timeout=timeout_s)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                # A `quit` still buffered for a program that already exited fails to flush on close.
                with contextlib.suppress(BrokenPipeError):
                    stream.close()
        self.last_log = self.log_text()
        self._log.close()
        self._log = None
        self._proc = None
        return proc.returncode

    def __enter__(self) -> ServicesProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, data: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.poll() is not None:
            raise BoardError("hil-services is not running")
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
        except BrokenPipeError as exc:
            raise BoardError(f"hil-services exited: {self._stderr_tail()}") from exc

    def _read_json(self, timeout_s: float) -> dict[str, Any]:
        line = self._read_line(timeout_s)
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise BoardError(f"hil-services printed {line!r}, not a JSON line") from exc
        if not isinstance(value, dict):
            raise BoardError(f"hil-services printed {line!r}, not a JSON object")
        return value

    def _read_line(self, timeout_s: float) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DutTimeoutError(f"hil-services did not answer within {timeout_s} s")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise BoardError(f"hil-services exited (status {proc.poll()}): {self._stderr_tail()}")
                self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def log_text(self) -> str:
        """Everything the services logged so far (ESP-IDF format lines)."""
        if self._log is None:
            return self.last_log
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def _stderr_tail(self) -> str:
        return self.log_text()[-2000:] or "(nothing logged)"
