"""The network lab: a host-side and a DUT-side namespace joined by a 100BASE-TX-shaped veth pair.

Nothing here touches the machine's own interfaces: both veth ends are created directly inside the
run's namespaces, and every peer the harness starts runs inside the host-side namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import LabError, MissingToolError

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
LOCK_DIR = Path("/run/esp-smoltcp-hil")
PREFIX = "hil-"
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT_S = 15.0

# Per-frame bytes a 100BASE-TX wire carries beyond what tc's `linklayer ethernet` counts for an IP
# packet of length L (tc adds the 14-byte header itself): preamble+SFD 8, FCS 4, inter-frame gap 12.
WIRE_OVERHEAD_BYTES = 24
ETHERNET_HEADER_BYTES = 14

# Every namespace of the lab: addresses usable at once (no duplicate-address-detection wait), and no TCP
# metrics cache, so one scenario's losses (cable pulls, floods) cannot lower the next connection's
# ssthresh: every transfer starts like a first connection after boot (smoltcp keeps no such cache).
LAB_SYSCTLS = (
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv4.tcp_no_metrics_save=1",
)


@dataclass(frozen=True)
class LinkProfile:
    """How the emulated cable behaves; defaults are 100BASE-TX full duplex at MTU 1500.

    Attributes:
        rate_mbit: line rate in each direction.
        mtu: IP MTU on both ends.
        burst_bytes: tbf bucket; two full frames keep the wire busy without letting a burst through.
        limit_bytes: tbf queue (about 12 ms at 100 Mbit/s, like a switch port buffer).
    """

    rate_mbit: int = 100
    mtu: int = 1500
    burst_bytes: int = 3076
    limit_bytes: int = 150000

    def frame_wire_bytes(self, ip_bytes: int) -> int:
        """Bytes on the wire for one IP packet, including every per-frame Ethernet cost."""
        return max(ip_bytes, 46) + ETHERNET_HEADER_BYTES + WIRE_OVERHEAD_BYTES

    def tcp_goodput_ceiling_mbps(self, timestamps: bool = True) -> float:
        """Highest possible TCP payload rate: full-MSS segments back to back."""
        payload = self.mtu - 40 - (12 if timestamps else 0)
        return self.rate_mbit * payload / self.frame_wire_bytes(self.mtu)

    def as_dict(self, timestamps: bool = True) -> dict[str, Any]:
        """The link parameters recorded with every run."""
        return {
            "kind": "veth-tbf",
            "rate_mbps": self.rate_mbit,
            "mtu": self.mtu,
            "duplex": "full",
            "tcp_timestamps": timestamps,
            "goodput_ceiling_mbps": round(self.tcp_goodput_ceiling_mbps(timestamps), 3),
        }


def require_tools(*names: str) -> None:
    """Fail with the fix when a program the lab needs is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise MissingToolError(
            f"missing program(s): {', '.join(missing)}; install them (Debian: `apt-get install iproute2 iperf3 "
            "iputils-ping`) or run `ci/install.sh`"
        )


def run_command(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT_S, check: bool = True) -> str:
    """Run a short command, returning its stdout; raise LabError with its stderr on failure."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from exc
    except FileNotFoundError as exc:
        raise MissingToolError(f"`{argv[0]}` not found; run `ci/install.sh` to install the lab's tools") from exc
    if check and done.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


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


@dataclass
class LabAddressing:
    """The lab's IPv4 plan: the same private subnet in every run is safe, each run has its own namespaces."""

    subnet: str = "10.77.0.0/24"
    host_ip: str = "10.77.0.1"
    pool_start: str = "10.77.0.100"
    pool_end: str = "10.77.0.199"

    @property
    def netmask(self) -> str:
        """Dotted netmask of the subnet."""
        return str(ipaddress.ip_network(self.subnet).netmask)

    @property
    def prefixlen(self) -> int:
        """Prefix length of the subnet."""
        return ipaddress.ip_network(self.subnet).prefixlen


@dataclass
class ManagedProcess:
    """A process the lab started; the lab ends it (by PID, with its process group) at teardown."""

    name: str
    popen: subprocess.Popen
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """Terminate the process group the process leads, then kill it if it does not exit in time."""
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        else:
            # The leader exited; children it left in its group still get the signal.
            _signal_group(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def new_run_id() -> str:
    """A short id unique across concurrent runs on one machine (it names namespaces and interfaces)."""
    return f"{os.getpid() % 100000:05d}{secrets.token_hex(2)}"


class Cable:
    """A lab's cable to the DUT: subclasses say how to switch one end; a timed pull is the same for all."""

    def set_link(self, up: bool, side: str = "host") -> None:
        """Plug (up) or pull (down) one end of the cable."""
        raise NotImplementedError

    def cable_pull(self, seconds: float, side: str = "host") -> None:
        """Take the link down for ``seconds``, then back up."""
        self.set_link(False, side)
        try:
            time.sleep(seconds)  # the outage itself is the stimulus, not a wait for something
        finally:
            self.set_link(True, side)


@dataclass
class Lab(Cable):
    """The namespaces and cable of one run.

    Use as a context manager, or call `start()` and `close()`; `close()` is idempotent and also runs
    at interpreter exit. Stale namespaces of runs whose process died are removed by `start()`.
    """

    run_id: str = field(default_factory=new_run_id)
    link: LinkProfile = field(default_factory=LinkProfile)
    addressing: LabAddressing = field(default_factory=LabAddressing)
    host_if: str = "lab0"
    dut_if: str = "eth0"
    log_dir: Path | None = None

    def __post_init__(self) -> None:
        self.host = Namespace(f"{PREFIX}{self.run_id}-host")
        self.dut = Namespace(f"{PREFIX}{self.run_id}-dut")
        self.processes: list[ManagedProcess] = []
        self._lock_fd: int | None = None
        self._started = False
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> Lab:
        """Create both namespaces, the veth cable and the shaping."""
        require_tools("ip", "tc")
        if os.geteuid() != 0:
            raise LabError("the virtual lab needs root (network namespaces, veth, tc): run the suite as root")
        sweep_stale_namespaces()
        self._take_lock()
        self._started = True
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _take_lock(self) -> None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(LOCK_DIR / f"{self.run_id}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.set_inheritable(fd, False)
        self._lock_fd = fd

    def _build(self) -> None:
        for ns in (self.host, self.dut):
            run_command(["ip", "netns", "add", ns.name])
            ns.ip("link", "set", "lo", "up")
            ns.run("sysctl", "-q", "-w", *LAB_SYSCTLS)
        self.host.ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.dut_if, "netns", self.dut.name)
        for ns, ifname in ((self.host, self.host_if), (self.dut, self.dut_if)):
            # One segment per skb: otherwise tbf charges the 24-byte overhead once per GSO super-packet.
            ns.ip("link", "set", "dev", ifname, "mtu", str(self.link.mtu), "gso_max_segs", "1")
            ns.tc(
                "qdisc", "add", "dev", ifname, "root", "tbf",
                "rate", f"{self.link.rate_mbit}mbit", "burst", str(self.link.burst_bytes),
                "limit", str(self.link.limit_bytes), "overhead", str(WIRE_OVERHEAD_BYTES), "linklayer", "ethernet",
            )  # fmt: skip
        self.host.ip("addr", "add", f"{self.addressing.host_ip}/{self.addressing.prefixlen}", "dev", self.host_if)
        self.host.ip("link", "set", self.host_if, "up")

    def close(self) -> None:
        """Stop every process the lab started and delete its namespaces. Safe to call more than once."""
        if self._closed or not self._started:
            return
        self._closed = True
        for process in reversed(self.processes):
            process.stop()
        for ns in (self.host, self.dut):
            ns.shutdown()
            _delete_namespace(ns.name)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            (LOCK_DIR / f"{self.run_id}.lock").unlink(missing_ok=True)
            self._lock_fd = None

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def address_dut(self, ip: str | None = None) -> str:
        """Give the DUT end a static address and bring it up, for a server run there without a board.

        Args:
            ip: the address (default: the first of the DHCP pool).

        Returns:
            The address.
        """
        address = ip or self.addressing.pool_start
        self.dut.ip("addr", "add", f"{address}/{self.addressing.prefixlen}", "dev", self.dut_if)
        self.dut.ip("link", "set", self.dut_if, "up")
        return address

    # --- processes -------------------------------------------------------------------------------------

    def spawn(
        self, name: str, ns: Namespace, command: Sequence[str], *, log_name: str | None = None, **popen_kwargs: Any
    ) -> ManagedProcess:
        """Start a long-running program inside ``ns``; it is stopped at `close()` if still running."""
        log_path = None
        if self.log_dir is not None and "stdout" not in popen_kwargs:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{log_name or name}.log"
            log_file = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
            popen_kwargs.update(stdout=log_file, stderr=subprocess.STDOUT)
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        try:
            popen = subprocess.Popen(ns.argv(*command), start_new_session=True, **popen_kwargs)
        except FileNotFoundError as exc:
            raise MissingToolError(f"cannot start {name}: {exc}; run `ci/install.sh`") from exc
        finally:
            if log_path is not None:
                log_file.close()
        process = ManagedProcess(name, popen, log_path)
        self.processes.append(process)
        return process

    # --- the cable -------------------------------------------------------------------------------------

    def set_link(self, up: bool, side: str = "host") -> None:
        """Plug (up) or pull (down) the cable; pulling the host end drops carrier on the DUT, like a real pull."""
        ns, ifname = (self.host, self.host_if) if side == "host" else (self.dut, self.dut_if)
        ns.ip("link", "set", ifname, "up" if up else "down")

    def interface_counters(self, side: str = "host") -> dict[str, int]:
        """Kernel counters of one end of the cable (rx/tx packets, bytes, drops, errors)."""
        ns, ifname = (self.host, self.host_if) if side == "host" else (self.dut, self.dut_if)
        text = ns.run("cat", *(f"/sys/class/net/{ifname}/statistics/{n}" for n in _COUNTER_NAMES))
        return dict(zip(_COUNTER_NAMES, (int(v) for v in text.split()), strict=True))

    def describe(self) -> dict[str, Any]:
        """What gets recorded about the lab with each run."""
        return {**self.link.as_dict(), "host_ns": self.host.name, "dut_ns": self.dut.name, **vars(self.addressing)}


_COUNTER_NAMES = ("rx_packets", "rx_bytes", "rx_dropped", "tx_packets", "tx_bytes", "tx_dropped")


def _delete_namespace(name: str) -> None:
    if not (NETNS_DIR / name).exists():
        return
    ns = Namespace(name)
    # Processes left in a namespace the project created are the project's own (a dead run's peers).
    for pid in ns.pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run_command(["ip", "netns", "delete", name], check=False)


def sweep_stale_namespaces() -> list[str]:
    """Delete `hil-` namespaces whose owning run is gone (its lock file is no longer held)."""
    removed: list[str] = []
    if not NETNS_DIR.is_dir():
        return removed
    for entry in sorted(NETNS_DIR.iterdir()):
        if not entry.name.startswith(PREFIX):
            continue
        run_id = entry.name[len(PREFIX) :].rsplit("-", 1)[0]
        if _owner_alive(run_id):
            continue
        _delete_namespace(entry.name)
        (LOCK_DIR / f"{run_id}.lock").unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def _owner_alive(run_id: str) -> bool:
    lock_path = LOCK_DIR / f"{run_id}.lock"
    if not lock_path.exists():
        return False
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
