"""DUTs for the fuzz campaign's own tests, on a bare lab cable: the native smoltcp firmware as a process, and
a deliberately fragile responder that crashes or wedges on frames the fuzzer is sure to send.

Both are `harness.fuzz.FuzzDut`s: what a board's console gives (counters, crash reports, reset, addresses)
comes here from the process (its stdin/stdout protocol, its exit).
"""

from __future__ import annotations

import contextlib
import json
import selectors
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from harness.boards.virtual import stackbuild
from harness.boards.virtual.firmware import SERVICE_OPTIONS
from harness.errors import BoardError, DutTimeoutError
from harness.fuzz import DutAddresses
from harness.lab.veth import VethLab
from harness.processes import spawn
from harness.services_program import ServicesProgram

FIRMWARE_MAC = "02:00:00:12:34:56"


class FirmwareDut:
    """``hil-firmware`` (smoltcp, DHCP from the lab, the virtual board's services) in the lab's DUT namespace; a
    reset restarts the process.

    Args:
        lab: the lab; the firmware takes over the DUT end of its cable.
        sanitize: the AddressSanitizer/UBSan build.
    """

    def __init__(self, lab: VethLab, sanitize: bool = False) -> None:
        self.lab = lab
        self.sanitize = sanitize
        self.program: ServicesProgram | None = None
        self.last_log = ""
        self.death = ""
        self._running = contextlib.ExitStack()

    def start(self) -> FirmwareDut:
        """Start the firmware and wait for its lease."""
        binary = stackbuild.build_firmware("smoltcp", sanitize=self.sanitize)
        program = ServicesProgram(list(SERVICE_OPTIONS), binary=binary, netns=self.lab.dut.name, mac=FIRMWARE_MAC,
                                  ready_timeout_s=60)  # fmt: skip
        self.program = self._running.enter_context(program)
        self.program.wait_event("got_ip", timeout=20)
        self.death = ""
        return self

    def stop(self) -> None:
        """Stop the firmware; what it logged (stderr) stays in ``last_log`` for crash and sanitizer reports."""
        if self.program is not None:
            self.program.close()
            self.last_log = self.program.log_text()
            self.program = None
        self._running.close()

    def checkpoint(self) -> None:
        """Nothing to mark: a crash is the process's exit."""

    def counters(self) -> Mapping[str, Any] | None:
        """The stack's counters from `stats`; None when it does not answer."""
        assert self.program is not None
        try:
            return self.program.stats(timeout=5)["net"]
        except TimeoutError:
            return None
        except (RuntimeError, OSError) as exc:  # the process is gone (its stdin closed, its output ended)
            self.death = str(exc)
            return None

    def crashes_since(self, checkpoint: None) -> str:
        """The firmware's exit, with the tail of its log."""
        return f"hil-firmware died: {self.death}" if self.death else ""

    def restart(self) -> None:
        """A new firmware process (the board's reset)."""
        self.stop()
        self.start()

    def addresses(self) -> DutAddresses:
        """From `ip` and the ports the firmware's ready line lists."""
        assert self.program is not None
        ip = self.program.command("ip")
        tcp = tuple(port for service in self.program.services.values() for port in service["tcp"])
        udp = tuple(port for service in self.program.services.values() for port in service["udp"])
        return DutAddresses(ip["ip"], FIRMWARE_MAC, ip["ipv6_ll"], tuple(dict.fromkeys(tcp)), tuple(dict.fromkeys(udp)))


# The fragile responder: answers ARP and ICMP echo for its address from user space (the kernel of its namespace
# has no address), counts frames, and answers `stats` on stdin. With `crash` it exits with status 70 on an ARP
# header addressed to it whose hardware address length is not 6; with `wedge` it stops answering the network
# (but not `stats`) after a UDP datagram to its address whose length field is larger than the IP payload, with
# valid IP and UDP checksums (so a replay only reproduces it when addresses and checksums were mapped right).
RESPONDER = r"""
import json, os, select, socket, struct, sys, time

ifname, my_ip, triggers = sys.argv[1], socket.inet_aton(sys.argv[2]), sys.argv[3].split(",")
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sock.bind((ifname, 0))
my_mac = sock.getsockname()[4][:6]
started, rx, wedged = time.monotonic(), 0, False

def fold(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total

def checksum(data):
    return ~fold(data) & 0xFFFF

print(json.dumps({"ready": True}), flush=True)
while True:
    readable = select.select([sock, sys.stdin], [], [])[0]
    if sys.stdin in readable:
        if not sys.stdin.readline():
            break
        print(json.dumps({"rx_frames": rx, "uptime_ms": int((time.monotonic() - started) * 1000)}), flush=True)
    if sock not in readable:
        continue
    frame, address = sock.recvfrom(65535)
    if address[2] == socket.PACKET_OUTGOING:
        continue
    rx += 1
    to_me = frame[:6] in (my_mac, b"\xff" * 6)
    if frame[12:14] == b"\x08\x06" and to_me and len(frame) >= 42:
        if "crash" in triggers and frame[18] != 6:
            os._exit(70)
        if not wedged and frame[14:22] == b"\x00\x01\x08\x00\x06\x04\x00\x01" and frame[38:42] == my_ip:
            reply = frame[6:12] + my_mac + b"\x08\x06" + frame[14:20] + b"\x00\x02" + my_mac + my_ip + frame[22:32]
            sock.send(reply)
    elif frame[12:14] == b"\x08\x00" and to_me and len(frame) >= 34 and frame[30:34] == my_ip:
        ihl = (frame[14] & 0x0F) * 4
        total = struct.unpack("!H", frame[16:18])[0]
        if ihl < 20 or len(frame) < 14 + ihl or checksum(frame[14:14 + ihl]) != 0:
            continue
        proto, payload = frame[23], frame[14 + ihl:14 + total]
        if proto == 17 and "wedge" in triggers and len(payload) >= 8:
            pseudo = frame[26:34] + struct.pack("!BBH", 0, 17, len(payload))
            udp_ok = payload[6:8] == b"\0\0" or checksum(pseudo + payload) == 0
            if udp_ok and struct.unpack("!H", payload[4:6])[0] > len(payload):
                wedged = True
        if proto == 1 and not wedged and len(payload) >= 8 and payload[0] == 8 and checksum(payload) == 0:
            icmp = b"\x00\x00\x00\x00" + payload[4:]
            icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
            header = frame[14:22] + b"\x40" + frame[23:24] + b"\0\0" + frame[30:34] + frame[26:30] + frame[34:14 + ihl]
            header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
            sock.send(frame[6:12] + my_mac + b"\x08\x00" + header + icmp)
"""


class FragileResponder:
    """The fragile responder as a DUT, in the lab's DUT namespace.

    Args:
        lab: the lab (the DUT end of its cable is brought up, without an address).
        ip: the address it answers for.
        triggers: ``crash``, ``wedge``, both, or neither (a well-behaved target).
    """

    def __init__(self, lab: VethLab, ip: str, triggers: tuple[str, ...] = ("crash", "wedge")) -> None:
        self.lab = lab
        self.ip = ip
        self.triggers = triggers
        self.proc: subprocess.Popen[str] | None = None
        lab.dut.run("sysctl", "-q", "-w", f"net.ipv6.conf.{lab.dut_if}.disable_ipv6=1")
        lab.dut.ip("link", "set", lab.dut_if, "up")
        self.mac = lab.dut.run("cat", f"/sys/class/net/{lab.dut_if}/address").strip()

    def start(self) -> FragileResponder:
        """Start it and wait until it listens."""
        argv = self.lab.dut.argv(sys.executable, "-c", RESPONDER, self.lab.dut_if, self.ip, ",".join(self.triggers))
        self.proc = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if not self._reply(timeout_s=10).get("ready"):
            raise BoardError("the fragile responder did not start")
        return self

    def stop(self) -> None:
        """Stop it (by its PID)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=5)
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self.proc = None

    def _reply(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                raise DutTimeoutError(f"the fragile responder did not answer within {timeout_s} s")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=5)  # its output ended: it is exiting, so its status comes at once
            raise BoardError("the fragile responder exited")
        return dict(json.loads(line))

    def checkpoint(self) -> None:
        """Nothing to mark: a crash is the process's exit."""

    def counters(self) -> Mapping[str, Any] | None:
        """Its frame counter, or None when it does not answer."""
        assert self.proc is not None and self.proc.stdin is not None
        if self.proc.poll() is not None:
            return None
        try:
            self.proc.stdin.write("stats\n")
            self.proc.stdin.flush()
            return self._reply(timeout_s=2)
        except (OSError, BoardError):
            return None

    def crashes_since(self, checkpoint: None) -> str:
        """Its exit status, once it exited."""
        assert self.proc is not None
        status = self.proc.poll()
        return f"the fragile responder exited with status {status}" if status is not None else ""

    def restart(self) -> None:
        """Kill it and start it again."""
        self.stop()
        self.start()

    def addresses(self) -> DutAddresses:
        """Its address and its interface's MAC; no IPv6, no TCP port."""
        return DutAddresses(self.ip, self.mac)
