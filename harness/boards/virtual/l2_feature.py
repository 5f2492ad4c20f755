"""The L2 echo (firmware/PROTOCOL.md "L2 echo") and `l2tap on|off <ethertype>` on the virtual board.

Each tap is an AF_PACKET socket on the DUT interface for one EtherType (at most 4, esp_smoltcp's limit).
Timestamps are software ones: the virtual NIC has no hardware clock, so `rx_hw_ns` is 0 (what the real
firmware sends when its driver hands the tap none) and `rx_us` is the twin's clock, in µs since boot,
taken when the frame was read. With the `l2_tap_deaf` fault frames are received and counted, never echoed.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.boards.virtual.registry import command, fault_mechanism, service

if TYPE_CHECKING:
    from harness.boards.virtual.firmware import Firmware

fault_mechanism("l2_tap_deaf")  # catalogue faults (faults.py) this module implements


L2_ECHO_ETHERTYPE = 0x88B5
USAGE = "usage: l2tap on|off <ethertype>"
MAX_TAPS = 4
ETH_HEADER = 14
REQUEST_HEADER = 10  # "HIL2", sequence (4), len (2)
TIMESTAMPS = 16
FRAME_MAX = 1514
MAGIC = b"HIL2"
PACKET_OUTGOING = 4  # sll_pkttype of frames this host sent: the tap must not echo its own echoes


@dataclass
class Tap:
    """One registered EtherType and its counters."""

    ethertype: int
    sock: socket.socket
    rx: int = 0
    echoed: int = 0
    dropped: int = 0


class L2Echo:
    """The taps and the thread that answers them."""

    def __init__(self, fw: Firmware) -> None:
        self.fw = fw
        self.mac = bytes.fromhex(fw.mac.replace(":", ""))
        self.taps: dict[int, Tap] = {}
        self.lock = threading.Lock()

    def on(self, ethertype: int) -> bool:
        """Register a tap (idempotent); False when all slots are taken."""
        with self.lock:
            if ethertype in self.taps:
                return True
            if len(self.taps) >= MAX_TAPS:
                return False
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
            sock.bind((self.fw.ifname, ethertype))
            sock.setblocking(False)
            self.taps[ethertype] = Tap(ethertype, sock)
            return True

    def off(self, ethertype: int) -> Tap | None:
        """Remove a tap and return it (with its counters), or None when it was not on."""
        with self.lock:
            tap = self.taps.pop(ethertype, None)
        if tap is not None:
            tap.sock.close()
        return tap

    def run(self) -> None:
        """Answer frames on every tap until the firmware stops."""
        while not self.fw.stop.is_set():
            with self.lock:
                taps = {tap.sock: tap for tap in self.taps.values()}
            if not taps:
                self.fw.stop.wait(0.2)
                continue
            try:
                ready, _, _ = select.select(list(taps), [], [], 0.2)
            except (OSError, ValueError):
                continue  # a tap was closed while we waited
            for sock in ready:
                self._answer(taps[sock])

    def _answer(self, tap: Tap) -> None:
        try:
            frame, address = tap.sock.recvfrom(FRAME_MAX + 4)
        except OSError:
            return
        rx_us = int((time.monotonic() - self.fw.console.started) * 1e6)
        if address[2] == PACKET_OUTGOING:
            return
        tap.rx += 1
        payload = frame[ETH_HEADER:]
        data_len = struct.unpack_from("!H", payload, 8)[0] if len(payload) >= REQUEST_HEADER else 0
        fits = ETH_HEADER + REQUEST_HEADER + data_len + TIMESTAMPS <= FRAME_MAX
        complete = len(payload) >= REQUEST_HEADER and REQUEST_HEADER + data_len <= len(payload)
        if not complete or payload[:4] != MAGIC or not fits:
            tap.dropped += 1
            return
        if self.fw.has_fault("l2_tap_deaf"):
            return
        reply = frame[6:12] + self.mac + frame[12:14] + payload[: REQUEST_HEADER + data_len]
        reply += struct.pack("!qq", 0, rx_us)
        try:
            tap.sock.send(reply)
            tap.echoed += 1
        except OSError:
            tap.dropped += 1

    def close(self) -> None:
        """Close every tap socket."""
        with self.lock:
            for tap in self.taps.values():
                tap.sock.close()
            self.taps.clear()


_echo: dict[str, L2Echo] = {}


@service
def start_l2_echo(fw: Firmware) -> None:
    """The 0x88B5 tap is on from boot, like hil_l2_start()."""
    echo = L2Echo(fw)
    echo.on(L2_ECHO_ETHERTYPE)
    _echo["active"] = echo
    threading.Thread(target=echo.run, name="l2-echo", daemon=True).start()
    fw.on_shutdown(echo.close)


def _parse_ethertype(text: str) -> int | None:
    try:
        value = int(text, 0)
    except ValueError:
        return None
    return value if 0x0600 <= value <= 0xFFFF else None


@command("l2tap", "l2tap on|off <ethertype>: L2 echo for an EtherType")
def l2tap_command(fw: Firmware, args: list[str]) -> None:
    if len(args) != 2 or args[0] not in ("on", "off"):
        fw.result("l2tap", ok=False, error=USAGE)
        return
    ethertype = _parse_ethertype(args[1])
    if ethertype is None:
        fw.result("l2tap", ok=False, error=f"bad ethertype: {args[1]}")
        return
    echo = _echo["active"]
    if args[0] == "on":
        if not echo.on(ethertype):
            fw.result("l2tap", ok=False, error="no free tap slot")
            return
        fw.result("l2tap", action="on", ethertype=ethertype)
        return
    tap = echo.off(ethertype)
    if tap is None:
        fw.result("l2tap", ok=False, error="not on")
        return
    fw.result("l2tap", action="off", ethertype=ethertype, rx=tap.rx, echoed=tap.echoed, dropped=tap.dropped)
