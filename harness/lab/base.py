"""The lab interface: the host side of one run, whatever the cable leads to.

A lab owns the run's host namespace (where the DHCP server, every peer and every traffic client run),
the cable to the DUT (pulled and plugged with `set_link`, counted with `interface_counters`), the
long-running processes it started, and the proof that the run is alive. `VethLab` (veth.py) cables a
virtual board through a shaped veth pair; `NicLab` (nic.py) moves a real NIC into the host namespace.
Scenarios and boards see only this interface.

A run proves it is alive with an owner file, `/run/esp-smoltcp-hil/<run id>.lock`: locked (flock) while
the run lives, and holding the owner's PID, that process's start time and the namespaces it creates. The
sweep at the start of every run deletes the namespaces of a run only when its owner file proves the run
dead (lock free, and the PID gone or another process by now); a `hil-` namespace without such proof is
left alone, whatever its name.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import LabError, MissingToolError
from harness.lab.netns import LOCK_DIR, NETNS_DIR, Namespace, delete_namespace, new_run_id
from harness.processes import spawn, start_time, stop_group

# Per-frame bytes a 100BASE-TX wire carries beyond what tc's `linklayer ethernet` counts for an IP
# packet of length L (tc adds the 14-byte header itself): preamble+SFD 8, FCS 4, inter-frame gap 12.
WIRE_OVERHEAD_BYTES = 24
ETHERNET_HEADER_BYTES = 14

# Every namespace of a lab: addresses usable at once (no duplicate-address-detection wait), and no TCP
# metrics cache, so one scenario's losses (cable pulls, floods) cannot lower the next connection's
# ssthresh: every transfer starts like a first connection after boot (smoltcp keeps no such cache).
LAB_SYSCTLS = (
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv4.tcp_no_metrics_save=1",
)
COUNTER_NAMES = ("rx_packets", "rx_bytes", "rx_dropped", "tx_packets", "tx_bytes", "tx_dropped")


@dataclass(frozen=True)
class LinkProfile:
    """The cable; defaults are 100BASE-TX full duplex at MTU 1500 (the virtual lab shapes its veth to it).

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

    def tcp_goodput_ceiling_mbps(self, timestamps: bool = True, mss: int | None = None) -> float:
        """Highest possible TCP payload rate: full segments back to back.

        Args:
            timestamps: every segment carries the 12-byte timestamps option.
            mss: payload bytes per segment as negotiated (default: what the MTU allows).
        """
        options = 12 if timestamps else 0
        payload = self.mtu - 40 - options if mss is None else mss
        return self.rate_mbit * payload / self.frame_wire_bytes(payload + 40 + options)

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
    """A process a lab started; it dies with the harness, and the lab stops it (and its group) at `close()`."""

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
        return stop_group(self.popen, timeout)


# --- proof of life of a run ----------------------------------------------------------------------------------


class RunOwnership:
    """The owner file of one run: locked while the run lives, naming the owner process and its namespaces.

    Args:
        run_id: the run.
        namespaces: the namespaces the run creates (written down before they exist).
    """

    def __init__(self, run_id: str, namespaces: Sequence[str]) -> None:
        self.run_id = run_id
        self.namespaces = list(namespaces)
        self.path = LOCK_DIR / f"{run_id}.lock"
        self._fd: int | None = None

    def acquire(self) -> RunOwnership:
        """Lock the owner file and write the owner's identity into it.

        Raises:
            LabError: another live run holds this run id.
        """
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise LabError(f"run id {self.run_id} is already in use by another run") from exc
        os.set_inheritable(fd, False)
        record = {"pid": os.getpid(), "start_time": start_time(os.getpid()), "namespaces": self.namespaces,
                  "created": time.time()}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the owner file and unlock it (the run's namespaces are gone by now)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def dead_run_namespaces(lock_path: Path) -> list[str] | None:
    """The namespaces of the run whose owner file this is, when that file proves the run dead; else None.

    Dead means: nobody holds the lock, and the recorded owner PID is gone or is another process now (its
    start time differs). A file that cannot be read or proves nothing (an older format) proves nothing.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # the run holds its lock: alive
        try:
            record = json.loads(os.pread(fd, 65536, 0) or b"{}")
            pid, started, namespaces = int(record["pid"]), record["start_time"], list(record["namespaces"])
        except (ValueError, KeyError, TypeError):
            return None
        if start_time(pid) == started and started is not None:
            return None  # the owner still runs (and lost its lock some other way): not ours to judge
        return [str(name) for name in namespaces]
    finally:
        os.close(fd)


def sweep_dead_runs() -> list[str]:
    """Delete the namespaces of runs that are proven dead (see `dead_run_namespaces`); return their names."""
    removed: list[str] = []
    if not LOCK_DIR.is_dir():
        return removed
    for lock_path in sorted(LOCK_DIR.glob("*.lock")):
        namespaces = dead_run_namespaces(lock_path)
        if namespaces is None:
            continue
        for name in namespaces:
            if (NETNS_DIR / name).exists():
                delete_namespace(name)
                removed.append(name)
        lock_path.unlink(missing_ok=True)
    return removed


# --- the lab -------------------------------------------------------------------------------------------------


class Lab(abc.ABC):
    """The host side of one run: its namespace, its cable to the DUT, its processes.

    Use as a context manager, or call `start()` and `close()`; `close()` is idempotent.

    Args:
        run_id: names the run's namespaces (`hil-<run_id>-host`, ...).
        host_if: the host end of the cable, inside the host namespace.
        addressing: the lab subnet; the host end gets ``addressing.host_ip``.
        link: the cable's profile (recorded with every run).
        log_dir: where the logs of spawned programs go (None: they go nowhere).
    """

    def __init__(
        self,
        run_id: str | None = None,
        *,
        host_if: str,
        addressing: LabAddressing | None = None,
        link: LinkProfile | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.run_id = run_id or new_run_id()
        self.host_if = host_if
        self.addressing = addressing or LabAddressing()
        self.link = link or LinkProfile()
        self.log_dir = log_dir
        self.host = Namespace(f"hil-{self.run_id}-host")
        self.processes: list[ManagedProcess] = []
        self.warnings: list[str] = []
        self._ownership: RunOwnership | None = None
        self._started = False
        self._closed = False

    # --- what each lab implements --------------------------------------------------------------------------

    @abc.abstractmethod
    def _check(self) -> None:
        """Refuse to start (raise) when the machine lacks what this lab needs; nothing is created yet."""

    @abc.abstractmethod
    def namespaces(self) -> list[Namespace]:
        """Every namespace the lab creates (the host namespace first)."""

    @abc.abstractmethod
    def _build(self) -> None:
        """Create the namespaces and the cable."""

    @abc.abstractmethod
    def _teardown(self) -> None:
        """Undo `_build` (processes are already stopped); runs also after a failed `_build`."""

    @abc.abstractmethod
    def cable_end(self, side: str) -> tuple[Namespace, str]:
        """The namespace and interface of one end of the cable (``host``; ``dut`` where the lab has it).

        Raises:
            LabError: this lab cannot reach that end.
        """

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Lab:
        """Check the machine, sweep dead runs, claim the run id, build the lab."""
        self._check()
        sweep_dead_runs()
        self._ownership = RunOwnership(self.run_id, [ns.name for ns in self.namespaces()]).acquire()
        self._started = True
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every process the lab started, undo the lab, release the run id. Safe to call more than once."""
        if self._closed or not self._started:
            return
        self._closed = True
        for process in reversed(self.processes):
            process.stop()
        for ns in self.namespaces():
            ns.shutdown()
        try:
            self._teardown()
        finally:
            if self._ownership is not None:
                self._ownership.release()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warn(self, message: str) -> None:
        """Note a problem that does not stop the run (printed by the session, recorded with the lab)."""
        self.warnings.append(message)

    # --- processes -----------------------------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        command: Sequence[str],
        *,
        ns: Namespace | None = None,
        log_name: str | None = None,
        **popen_kwargs: Any,
    ) -> ManagedProcess:
        """Start a long-running program in the host namespace (or ``ns``); it is stopped at `close()`.

        Its output goes to ``<log_dir>/<log_name or name>.log`` unless ``stdout`` is given.
        """
        log_path = None
        log_file = None
        if self.log_dir is not None and "stdout" not in popen_kwargs:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{log_name or name}.log"
            log_file = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
            popen_kwargs.update(stdout=log_file, stderr=subprocess.STDOUT)
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        try:
            popen = spawn((ns or self.host).argv(*command), **popen_kwargs)
        except FileNotFoundError as exc:
            raise MissingToolError(f"cannot start {name}: {exc}; run `ci/install.sh`") from exc
        finally:
            if log_file is not None:
                log_file.close()
        process = ManagedProcess(name, popen, log_path)
        self.processes.append(process)
        return process

    # --- the cable -----------------------------------------------------------------------------------------

    def set_link(self, up: bool, side: str = "host") -> None:
        """Plug (up) or pull (down) one end of the cable; pulling the host end drops the DUT's carrier."""
        ns, ifname = self.cable_end(side)
        ns.ip("link", "set", "dev", ifname, "up" if up else "down")

    def forget_dut(self) -> None:
        """Forget what the host side knows about the DUT's link layer: its neighbour entries on the cable.

        Called whenever the DUT resets. A reset DUT knows nobody: a stack that discards the packet it must first
        resolve (smoltcp does, see docs/scenarios.md) would otherwise lose its first answer to a host that
        still remembers it and does not ask; asked, it learns the host from the request.
        """
        ns, ifname = self.cable_end("host")
        ns.ip("neigh", "flush", "dev", ifname, check=False)

    @contextlib.contextmanager
    def dut_neighbour_pinned(self, dut_ip: str, dut_mac: str) -> Iterator[None]:
        """While inside, the host side knows the DUT's MAC for sure and never asks ARP for it.

        Linux re-confirms a neighbour only when its entry goes stale, some seconds after the last confirmation:
        a probe that lands inside a test teaches the DUT the host again, and a scenario about what the DUT
        remembers would pass or fail by that timing. Pinned, the host behaves the same way every time (as a
        peer with a fresh entry does); on exit the entries on the cable are forgotten (`forget_dut`).
        """
        ns, ifname = self.cable_end("host")
        ns.ip("neigh", "replace", dut_ip, "lladdr", dut_mac, "dev", ifname, "nud", "permanent")
        try:
            yield
        finally:
            ns.ip("neigh", "del", dut_ip, "dev", ifname, check=False)  # `neigh flush` keeps permanent entries
            self.forget_dut()

    def cable_pull(self, seconds: float, side: str = "host") -> None:
        """Take the link down for ``seconds``, then back up."""
        self.set_link(False, side)
        try:
            time.sleep(seconds)  # the outage itself is the stimulus, not a wait for something
        finally:
            self.set_link(True, side)

    def interface_counters(self, side: str = "host") -> dict[str, int]:
        """Kernel counters of one end of the cable (rx/tx packets, bytes, drops)."""
        ns, ifname = self.cable_end(side)
        text = ns.run("cat", *(f"/sys/class/net/{ifname}/statistics/{name}" for name in COUNTER_NAMES))
        return dict(zip(COUNTER_NAMES, (int(v) for v in text.split()), strict=True))
