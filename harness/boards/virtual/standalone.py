"""A standalone virtual ESP32-P4: lab namespaces, DHCP server, the board and its RFC2217 port, in one process.

``hil virtual start`` runs this module detached (``python -m harness.boards.virtual.standalone --name N``).
Once the board is up it writes ``/run/esp-smoltcp-hil/virtual/<name>/state.json``::

    {"name", "port" (pty), "rfc2217", "control", "dut_ns", "host_ns", "host_if", "dut_ip", "flash_dir",
     "pid", "ready", "external_lab"}

and keeps ``dut_ip`` current from the DHCP server's leases. SIGTERM (``hil virtual stop``) tears
everything down: RFC2217 server, board process (and its firmware), DHCP server, namespaces, pty.

With ``--external-lab`` there is no host namespace and no DHCP server: the host end of the shaped
veth stays in the root namespace as ``hv<id>`` (no address, down), for a NIC lab to take over as if it
were a real NIC cabled to a real board. That interface is this project's own veth end, never one of
the machine's interfaces.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.boards.virtual.board import control_request, start_supervisor, virtual_mac
from harness.boards.virtual.kind import STACKS
from harness.errors import BoardError, ConfigError, LabError
from harness.lab.base import WIRE_OVERHEAD_BYTES, ManagedProcess
from harness.lab.netns import LOCK_DIR, Namespace, delete_namespace, run_command
from harness.lab.veth import VethLab

STATE_ROOT = LOCK_DIR / "virtual"
STATE_FILE = "state.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
READY_TIMEOUT_S = 15.0
LEASE_WAIT_S = 8.0
POLL_S = 0.2


def check_name(name: str) -> str:
    """Validate a board name (it names a directory)."""
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"board name {name!r} is not 1-32 letters, digits, '-' or '_'; pick e.g. --name board1")
    return name


def state_dir(name: str) -> Path:
    """Where a named board keeps its state file and control socket."""
    return STATE_ROOT / check_name(name)


def read_state(name: str) -> dict[str, Any] | None:
    """The board's state file, or None when there is none."""
    path = state_dir(name) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise BoardError(f"{path} is not valid JSON ({exc}); stop the board or delete the file") from exc


def write_state(name: str, state: dict[str, Any]) -> None:
    """Replace the state file atomically (readers never see half a file)."""
    path = state_dir(name) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, path)


class ExternalLab(VethLab):
    """A lab whose host end of the cable stays in the root namespace, unaddressed, for a NIC lab to claim.

    Only the DUT namespace is created; the veth pair is created inside it and the host end moved out to
    the root namespace with the name ``hv<run id>``, so nothing of the machine's own is touched.
    """

    def __init__(self, run_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(run_id, **kwargs)
        self.host_if = f"hv{self.run_id}"[:15]

    def namespaces(self) -> list[Namespace]:
        """The DUT namespace only: the host end is left for whoever takes it."""
        return [self.dut]

    def _build(self) -> None:
        dut = self.dut
        run_command(["ip", "netns", "add", dut.name])
        dut.ip("link", "set", "lo", "up")
        dut.run("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        dut.ip("link", "add", self.dut_if, "type", "veth", "peer", "name", self.host_if, "netns", "1")
        for argv in (["ip", "-n", dut.name], ["ip"]):
            ifname = self.dut_if if len(argv) > 1 else self.host_if
            run_command([*argv, "link", "set", "dev", ifname, "mtu", str(self.link.mtu), "gso_max_segs", "1"])
            run_command([*(["ip", "netns", "exec", dut.name] if len(argv) > 1 else []), "ethtool", "-K", ifname,
                         "tx", "off"])  # finished checksums on the cable, as VethLab does  # fmt: skip
            tc = ["tc", "-n", dut.name] if len(argv) > 1 else ["tc"]
            run_command([
                *tc, "qdisc", "add", "dev", ifname, "root", "tbf", "rate", f"{self.link.rate_mbit}mbit",
                "burst", str(self.link.burst_bytes), "limit", str(self.link.limit_bytes),
                "overhead", str(WIRE_OVERHEAD_BYTES), "linklayer", "ethernet",
            ])  # fmt: skip

    def _teardown(self) -> None:
        """Delete the DUT namespace (its veth end takes the root-namespace end with it)."""
        delete_namespace(self.dut.name)
        delete_root_veth(self.host_if)


def delete_root_veth(ifname: str) -> None:
    """Remove a leftover ``hv*`` veth end of ours from the root namespace (only veths named hv*)."""
    if not ifname.startswith("hv"):
        return
    out = run_command(["ip", "-j", "-d", "link", "show", "dev", ifname], check=False)
    try:
        links = json.loads(out or "[]")
    except ValueError:
        return
    if links and links[0].get("linkinfo", {}).get("info_kind") == "veth":
        run_command(["ip", "link", "delete", "dev", ifname], check=False)


class StandaloneBoard:
    """Everything one standalone virtual board runs; `run()` serves until SIGTERM."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name = check_name(args.name)
        self.dir = state_dir(self.name)
        self.flash_dir = Path(args.flash_dir).resolve() if args.flash_dir else self.dir / "flash"
        lab_class = ExternalLab if args.external_lab else VethLab
        self.lab = lab_class(log_dir=self.dir / "logs")
        self.dhcp: Any = None
        self.board: ManagedProcess | None = None
        self.rfc2217: Any = None
        self.mac = virtual_mac(f"{self.name}-{self.lab.run_id}")
        self.state: dict[str, Any] = {}
        self.stop = threading.Event()

    def start(self) -> None:
        """Build the lab, start the DHCP server, the board and the RFC2217 server."""
        from harness.boards.virtual.rfc2217 import Rfc2217Server

        self.dir.mkdir(parents=True, exist_ok=True)
        self.lab.start()
        if not self.args.external_lab:
            from harness.lab.dhcp import DhcpServer

            self.dhcp = DhcpServer(self.lab.host, self.lab.host_if, self.lab.addressing).start()
        self.board = start_supervisor(self.lab, self.dir, flash_dir=self.flash_dir, mac=self.mac,
                                      stack=self.args.stack, chip_rev=self.args.chip_rev)  # fmt: skip
        ready = self._read_ready()
        self.rfc2217 = Rfc2217Server(ready["port"], lambda op: control_request(ready["control"], op)).start()
        self.state = {
            "name": self.name, "port": ready["port"], "rfc2217": self.rfc2217.url, "control": ready["control"],
            "dut_ns": self.lab.dut.name, "host_ns": None if self.args.external_lab else self.lab.host.name,
            "host_if": self.lab.host_if, "dut_ip": None, "mac": self.mac, "flash_dir": str(self.flash_dir),
            "chip_rev": self.args.chip_rev, "stack": self.args.stack, "external_lab": bool(self.args.external_lab),
            "pid": os.getpid(),
            "ready": False,
        }  # fmt: skip
        write_state(self.name, self.state)
        control_request(ready["control"], "reset")
        if self.dhcp is not None:
            self._wait_for_lease(ready["control"], LEASE_WAIT_S)
        self.state["ready"] = True
        write_state(self.name, self.state)

    def _read_ready(self) -> dict[str, Any]:
        import select

        assert self.board is not None and self.board.popen.stdout is not None
        stdout = self.board.popen.stdout
        line = stdout.readline() if select.select([stdout], [], [], READY_TIMEOUT_S)[0] else b""
        if not line:
            raise BoardError(f"the virtual board process did not start; see {self.dir / 'supervisor.log'}")
        return json.loads(line)

    def _lease_ip(self) -> str | None:
        now = time.monotonic()
        for lease in list(self.dhcp.leases.values()):
            if lease.mac.lower() == self.mac and lease.active(now):
                return lease.ip
        return None

    def _wait_for_lease(self, control: str, timeout: float) -> None:
        """Wait for the booted app's lease; give up at once when the board does not run an app."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            ip = self._lease_ip()
            if ip:
                self.state["dut_ip"] = ip
                return
            if control_request(control, "status")["state"] not in ("reset", "booting", "running"):
                return  # boot loop, download mode, halted: no lease is coming
            self.stop.wait(POLL_S)

    def run(self) -> None:
        """Keep ``dut_ip`` current until stopped."""
        while not self.stop.wait(0.5):
            if self.board is not None and not self.board.alive():
                print("virtual board process exited; stopping", file=sys.stderr, flush=True)
                return
            if self.dhcp is not None:
                ip = self._lease_ip()
                if ip != self.state.get("dut_ip"):
                    self.state["dut_ip"] = ip
                    write_state(self.name, self.state)

    def close(self) -> None:
        """Tear down in reverse order; each step runs even if an earlier one failed."""
        steps = (
            lambda: self.rfc2217 and self.rfc2217.close(),
            lambda: self.board and self.board.stop(),
            lambda: self.dhcp and self.dhcp.stop(),
            self.lab.close,
            lambda: self.board and self.board.popen.stdout and self.board.popen.stdout.close(),
            lambda: (self.dir / STATE_FILE).unlink(missing_ok=True),
        )
        for step in steps:
            try:
                step()
            except Exception as exc:
                print(f"teardown problem: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Process entry point (started detached by ``hil virtual start``)."""
    parser = argparse.ArgumentParser(prog="python -m harness.boards.virtual.standalone", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--name", default="vboard")
    parser.add_argument("--flash-dir")
    parser.add_argument("--chip-rev", default="v1.0", choices=("v1.0", "v3.1"))
    parser.add_argument("--stack", default="smoltcp", choices=STACKS)
    parser.add_argument("--external-lab", action="store_true")
    args = parser.parse_args(argv)
    board = StandaloneBoard(args)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: board.stop.set())
    try:
        board.start()
        board.run()
    except (LabError, BoardError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        board.close()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
