"""Drive the services program (firmware/services/README.md) as a child process, for tests.

One driver for both programs that speak its stdin/stdout protocol: `hil-services` (the services on the
host's own sockets) and the virtual board's native firmware `hil-firmware` (the same services on smoltcp or
the kernel, plus stack events and the `ip`, `heap`, `sockets` commands). It starts the program, waits for
its ready line, sends commands and collects replies and asynchronous event lines. By default it runs the
sanitizer build of `hil-services`, so every test that uses it also proves the C free of AddressSanitizer/UBSan
reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.boards.virtual import cbuild
from harness.paths import certs_dir
from harness.processes import spawn

MAC = "02:00:00:12:34:56"
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


class ServicesProgram:
    """One running services program; a context manager that always stops it.

    Args:
        args: options naming the services, e.g. ``["--http", "0", "--https", "0"]`` (port 0: any free port).
        binary: the program (default: `hil-services`, built on demand; pass `stackbuild.build_firmware(...)`
            for the native firmware).
        sanitized: the ASan/UBSan build of `hil-services` (default) rather than the release build.
        certs: pass ``--certs`` with the project's test certificates.
        mac: the MAC (`--mac`): the MQTT client's name, and the native firmware's hardware address.
        netns: run inside this network namespace.
        faults: catalogue fault names for the C code (HIL_FAULTS).
        ready_timeout_s: how long the program may take to bind its services.
    """

    def __init__(self, args: list[str], *, binary: Path | None = None, sanitized: bool = True, certs: bool = True,
                 mac: str | None = MAC, netns: str | None = None, faults: tuple[str, ...] = (),
                 ready_timeout_s: float = 20.0) -> None:  # fmt: skip
        self.argv = [*args, *(["--certs", str(certs_dir())] if certs else []), *(["--mac", mac] if mac else [])]
        self.binary = binary
        self.sanitized = sanitized
        self.netns = netns
        self.faults = faults
        self.ready_timeout_s = ready_timeout_s
        self.ready: dict[str, Any] = {}
        self.services: dict[str, dict[str, list[int]]] = {}
        self.events: list[dict[str, Any]] = []
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._events_changed = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        """The program's PID (inside ``ip netns exec`` it is the same process after exec)."""
        if self._proc is None:
            raise RuntimeError("the services program is not running")
        return self._proc.pid

    def start(self) -> ServicesProgram:
        """Start the program and wait for its ready line."""
        binary = self.binary or cbuild.build_services(sanitize=self.sanitized)
        cmd = [str(binary), *self.argv, "--ready-timeout", str(max(1, int(self.ready_timeout_s)))]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        # The log goes to a file, not a pipe: an unread pipe would fill up and stall the program.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        env = {**os.environ, "HIL_FAULTS": ",".join(self.faults)}
        self._proc = spawn(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env)
        self._reader = threading.Thread(target=self._read_lines, name="services-stdout", daemon=True)
        self._reader.start()
        ready = self._reply(self.ready_timeout_s + 10)
        if not ready.get("ready"):
            self.close()
            raise RuntimeError(f"{binary.name} did not start: {ready}; its log: {self.log_text()[-2000:]}")
        self.ready = ready
        self.services = ready["services"]
        return self

    def _read_lines(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            value = json.loads(raw)
            if "event" in value:
                with self._events_changed:
                    self.events.append(value)
                    self._events_changed.notify_all()
            else:
                self._replies.put(value)
        self._replies.put(None)  # the program ended

    def _reply(self, timeout: float) -> dict[str, Any]:
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty as exc:
            raise TimeoutError(f"the services program did not answer within {timeout:g} s") from exc
        if reply is None:
            raise RuntimeError(f"the services program exited: {self.log_text()[-2000:]}")
        return reply

    def tcp_port(self, service: str) -> int:
        """The bound TCP port of ``http``, ``https``, ``iperf3``, ..."""
        return self.services[service]["tcp"][0]

    def udp_ports(self, service: str) -> list[int]:
        """The bound UDP ports of ``select_echo``, ``udp_echo``, ``mcast_echo``, ..."""
        return self.services[service]["udp"]

    def udp_port(self, service: str) -> int:
        """The first bound UDP port of a service."""
        return self.udp_ports(service)[0]

    def command(self, line: str, timeout: float = 30.0) -> dict[str, Any]:
        """Send one stdin command and return its one-line JSON reply."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(line.encode() + b"\n")
        self._proc.stdin.flush()
        return self._reply(timeout)

    def stats(self, timeout: float = 10.0) -> dict[str, Any]:
        """The `stats` reply: the services' counters (and ``net``, the HIL_STATS fields, with a stack)."""
        return self.command("stats", timeout)

    def wait_event(self, match: str | Callable[[dict[str, Any]], bool], timeout: float = 15.0,
                   since: int = 0) -> dict[str, Any]:  # fmt: skip
        """The first event from index ``since`` on that ``match`` accepts (or named ``match``); waits ``timeout`` s."""
        accept = (lambda event: event.get("event") == match) if isinstance(match, str) else match
        deadline = time.monotonic() + timeout
        with self._events_changed:
            while True:
                for event in self.events[since:]:
                    if accept(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching event within {timeout:g} s; events: {self.events[since:]}")
                self._events_changed.wait(left)

    def log_text(self) -> str:
        """What the program logged to stderr so far (readable after close, until the context ends)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def sanitizer_reports(self) -> str:
        """Log lines of sanitizer reports (empty when there were none)."""
        return "\n".join(line for line in self.log_text().splitlines() if any(m in line for m in SANITIZER_MARKS))

    def close(self) -> int | None:
        """Quit the program (kill it if it does not) and return its exit status; the log stays readable."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b"quit\n")
                proc.stdin.flush()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._proc = None
        return proc.returncode

    def __enter__(self) -> ServicesProgram:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        if self._log is not None:
            self._log.close()
            self._log = None


def check_clean_exit(program: ServicesProgram) -> None:
    """Quit ``program`` and assert it exited 0 with no sanitizer report (leaks are checked at exit)."""
    status = program.close()
    reports = program.sanitizer_reports()
    assert not reports, f"sanitizer reports from the services program:\n{reports}\n{program.log_text()[-4000:]}"
    assert status == 0, f"the services program exited with status {status}: {program.log_text()[-2000:]}"
