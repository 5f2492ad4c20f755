"""Child processes that die with the process that started them, even when it is killed with SIGKILL.

Every long-running helper the harness forks (the virtual board, its firmware and services, peers such as
mosquitto, the runs of `hil selftest`) is started through `spawn`: it leads its own process group, so
stopping it takes its own children too, and it carries a parent-death signal (Linux `PR_SET_PDEATHSIG`),
so a parent that dies without running its teardown cannot leave it behind.

The kernel sends the parent-death signal when the *thread* that forked the child ends, not the process.
`spawn` therefore forks from one long-lived launcher thread per process, whatever thread calls it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 5.0

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl


def _die_with(parent: int, sig: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec: keep it to two system calls
        _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return preexec


class _Launcher:
    """The one thread of this process that forks helpers (so their parent-death signal stays armed)."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen], Future]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = 0

    def run(self, start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or self._pid != os.getpid():  # none yet, or we are a fork of its process
                self._requests = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._serve, name="process-launcher", daemon=True)
                self._thread.start()
                self._pid = os.getpid()
        done: Future[subprocess.Popen] = Future()
        self._requests.put((start, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            start, done = self._requests.get()
            try:
                done.set_result(start())
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)


_LAUNCHER = _Launcher()


def spawn(
    argv: Sequence[str], *, death_signal: int = signal.SIGKILL, own_group: bool = True, **popen_kwargs: Any
) -> subprocess.Popen:
    """Start ``argv``; it receives ``death_signal`` when this process dies.

    Args:
        argv: the command line.
        death_signal: what the child gets when this process ends (SIGTERM lets it clean up after itself).
        own_group: lead a new process group (stopped as one); False keeps it in this process's group.
        **popen_kwargs: passed to `subprocess.Popen` (not ``preexec_fn`` or ``start_new_session``).
    """
    preexec = _die_with(os.getpid(), death_signal)
    return _LAUNCHER.run(
        lambda: subprocess.Popen(list(argv), start_new_session=own_group, preexec_fn=preexec, **popen_kwargs)
    )


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to a process group the harness started (gone or not ours: nothing happens)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(popen: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the process group ``popen`` leads, SIGKILL it if it does not exit in time; return the exit code."""
    if popen.poll() is None:
        signal_group(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(popen.pid, signal.SIGKILL)
            popen.wait(timeout=timeout)
    else:
        # The leader exited; children it left in its group still get the signal.
        signal_group(popen.pid, signal.SIGKILL)
    return popen.returncode


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (/proc/<pid>/stat field 22); None when it is gone.

    A PID is reused after its process exits; the pair (pid, start time) names one process for good.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19])


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU seconds used by a process (default: this one)."""
    with open(f"/proc/{pid or os.getpid()}/stat", encoding="ascii", errors="replace") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
