"""Network namespaces of the project: run programs or Python code inside them, and delete them.

Every namespace the harness creates is named `hil-<run id>-<role>`; a name alone never proves that a
namespace is ours to delete (`harness.lab.base.sweep_dead_runs` checks the owning run first).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import LabError, MissingToolError
from harness.processes import spawn

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
LOCK_DIR = Path("/run/esp-smoltcp-hil")
PREFIX = "hil-"
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT_S = 15.0


def require_tools(*names: str) -> None:
    """Fail with the fix when a program the lab needs is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise MissingToolError(
            f"missing program(s): {', '.join(missing)}; install them (Debian: `apt-get install iproute2 iperf3 "
            "iputils-ping`) or run `ci/install.sh`"
        )


def run_command(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT_S, check: bool = True) -> str:
    """Run a short command, returning its stdout; raise LabError with its stderr on failure.

    The command dies with the harness (an iperf3 or ping client must not outlive a killed run).
    """
    try:
        process = spawn(argv, own_group=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        stdin=subprocess.DEVNULL)  # fmt: skip
    except FileNotFoundError as exc:
        raise MissingToolError(f"`{argv[0]}` not found; run `ci/install.sh` to install the lab's tools") from exc
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        process.communicate()
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from exc
    if check and process.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed ({process.returncode}): {stderr.strip() or stdout.strip()}")
    return stdout


def require_lab_namespace(host: str) -> None:
    """Refuse to talk to a non-loopback address from outside the project's `hil-` network namespaces.

    Lab addresses only exist inside the lab's namespaces; from the machine's own namespace the same address
    could be a real machine. Run the caller through `Namespace.call` (e.g. ``lab.host.call(fn)``).

    Raises:
        LabError: the calling thread is not in one of the `hil-*` namespaces and ``host`` is not loopback.
    """
    if ipaddress.ip_address(host).is_loopback:
        return
    here = os.stat("/proc/thread-self/ns/net")
    for entry in NETNS_DIR.glob(f"{PREFIX}*"):
        try:
            ns = os.stat(entry)
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == (here.st_dev, here.st_ino):
            return
    raise LabError(
        f"refusing to connect to {host} from outside the lab's network namespaces: lab traffic must run in the "
        "lab's host namespace (wrap the call in lab.host.call(...))"
    )


def _enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise LabError(f"cannot enter network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


class Namespace:
    """One network namespace of the lab: run programs in it, or Python callables on a thread inside it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def argv(self, *command: str) -> list[str]:
        """The command line that runs ``command`` inside this namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str, timeout: float = COMMAND_TIMEOUT_S, check: bool = True) -> str:
        """Run a short command inside the namespace and return its stdout."""
        return run_command(self.argv(*command), timeout=timeout, check=check)

    def ip(self, *args: str, check: bool = True) -> str:
        """Run `ip -n <ns> ...`."""
        return run_command(["ip", "-n", self.name, *args], check=check)

    def tc(self, *args: str) -> str:
        """Run `tc -n <ns> ...`."""
        return run_command(["tc", "-n", self.name, *args])

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None, **kwargs: Any) -> T:
        """Run ``fn`` on a worker thread inside this namespace; sockets it creates live in the namespace."""
        return self.submit(fn, *args, **kwargs).result(timeout=timeout)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Like `call` but returns the future at once."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=8, thread_name_prefix=self.name, initializer=_enter_netns, initargs=(self.name,)
                )
            return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        """Stop the worker threads (running calls are not waited for)."""
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def pids(self) -> list[int]:
        """PIDs of processes whose network namespace is this one."""
        out = run_command(["ip", "netns", "pids", self.name], check=False)
        return [int(pid) for pid in out.split() if pid.isdigit()]


def new_run_id() -> str:
    """A short id unique across concurrent runs on one machine (it names namespaces and interfaces)."""
    return f"{os.getpid() % 100000:05d}{secrets.token_hex(2)}"


def delete_namespace(name: str) -> None:
    """Kill what still runs in one of the project's namespaces, then delete it (the caller proved it ours)."""
    if not (NETNS_DIR / name).exists():
        return
    for pid in Namespace(name).pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run_command(["ip", "netns", "delete", name], check=False)
