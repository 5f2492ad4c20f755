"""The virtual board's DHCPv4 client: an RFC 2131 state machine over AF_PACKET, like the firmware's.

It runs inside the DUT namespace in a process started with `ip netns exec` (so `/sys/class/net`
shows the DUT's interfaces), speaks DHCP on raw frames (no address is needed to take part), and
applies what it is given with `ip addr replace` / `ip route replace`, removing it again when the
lease ends. Times are RFC 2131's except the retransmission back-off, which is shortened (1 s
doubling to 8 s, 1 s floor while renewing) so lab scenarios with leases of seconds stay quick.

Run stand-alone for debugging: ``ip netns exec <dut-ns> python -m harness.boards.virtual.dhcp_client
--ifname eth0`` prints one JSON line per event.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import errno
import json
import logging
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.lab.dhcp_packet import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_IP,
    BROADCAST_MAC,
    CLIENT_PORT,
    ETH_P_IP,
    INFINITE_LEASE,
    SERVER_PORT,
    ZERO_IP,
    DhcpMessage,
    MalformedPacket,
    MessageType,
    Opt,
    attach_filter,
    build_options,
    ip_bytes,
    mac_to_bytes,
    parse_udp_frame,
    prefixlen_of,
    udp_dst_port_filter,
    udp_frame,
)

log = logging.getLogger(__name__)

FAULTS = frozenset({"no_renewal", "ignore_nak"})
PARAMS_REQUESTED = bytes((Opt.SUBNET_MASK, Opt.ROUTER, Opt.DNS, Opt.LEASE_TIME, Opt.RENEWAL_T1, Opt.REBINDING_T2))
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 8.0
RENEW_RETRY_MIN_S = 1.0  # RFC 2131 says 60 s; lab leases last seconds
REQUEST_TRIES = 4
REBOOT_TRIES = 3
POLL_S = 0.2  # how often carrier and the stop flag are looked at
IP_COMMAND_TIMEOUT_S = 5.0

EventCallback = Callable[[str, dict], None]


class State(str, enum.Enum):
    """RFC 2131 figure 5 states (REBOOTING is INIT-REBOOT's waiting state after a link comes back)."""

    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"
    REBOOTING = "rebooting"


@dataclass(frozen=True)
class Lease:
    """An address the client holds, with the server's timers (seconds relative to ``acquired``)."""

    ip: str
    netmask: str
    gateway: str | None
    dns: tuple[str, ...]
    server: str
    server_mac: str
    lease_s: int
    t1_s: float
    t2_s: float
    acquired: float  # time.monotonic() when the REQUEST that earned it was sent

    @property
    def prefixlen(self) -> int:
        """Prefix length of ``netmask``."""
        return prefixlen_of(self.netmask)

    @property
    def infinite(self) -> bool:
        """Whether the lease never ends."""
        return self.lease_s == INFINITE_LEASE

    def at(self, offset_s: float) -> float:
        """Monotonic deadline ``offset_s`` after the lease was acquired (never, for an infinite lease)."""
        return float("inf") if self.infinite else self.acquired + offset_s


class DhcpClient:
    """A DHCPv4 client for one interface.

    Args:
        ifname: interface in the current network namespace.
        mac: the board's MAC (chaddr, client id and Ethernet source).
        on_event: called with ``(name, fields)`` for `got_ip`, `lost_ip` and `dhcp` (state changes).
        hostname: sent as option 12.
        faults: misbehaviours from `FAULTS`: `no_renewal` never renews or rebinds (the lease runs out);
            `ignore_nak` keeps using the address after a NAK.
    """

    def __init__(
        self,
        ifname: str,
        mac: str,
        *,
        on_event: EventCallback,
        hostname: str = "esp32p4-hil",
        faults: frozenset[str] = frozenset(),
    ) -> None:
        unknown = set(faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown DHCP client fault(s) {sorted(unknown)}; known: {sorted(FAULTS)}")
        self.ifname = ifname
        self.mac = mac.lower()
        mac_to_bytes(self.mac)
        self.on_event = on_event
        self.hostname = hostname
        self.faults = frozenset(faults)
        self.state = State.INIT
        self.current: Lease | None = None
        self._sock: socket.socket | None = None
        self._sink: socket.socket | None = None
        self._xid = 0
        self._offer: DhcpMessage | None = None
        self._offer_mac = BROADCAST_MAC
        self._started = 0.0  # when the current acquisition began (for the secs field)
        self._tries = 0
        self._next_tx = float("inf")
        self._carrier = False

    # --- main loop ---------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; the address is removed before returning."""
        self._open_sockets()
        try:
            while not stop.is_set():
                now = time.monotonic()
                self._check_carrier(now)
                if self._carrier:
                    self._on_timers(now)
                else:
                    self._check_expiry(now)
                timeout = max(0.0, min(POLL_S, self._next_deadline() - time.monotonic()))
                readable, _, _ = select.select([self._sock, self._sink], [], [], timeout)
                if self._sink in readable:
                    self._sink.recv(4096)  # only here so the kernel does not answer port 68 with ICMP
                if self._sock in readable:
                    self._receive_all()
        finally:
            self._drop(None)
            for sock in (self._sock, self._sink):
                if sock is not None:
                    sock.close()

    def _open_sockets(self) -> None:
        ifindex = socket.if_nametoindex(self.ifname)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        attach_filter(sock, udp_dst_port_filter(CLIENT_PORT))
        sock.bind((self.ifname, ETH_P_IP))
        sock.setblocking(False)
        self._sock = sock
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
        sink.bind(("0.0.0.0", CLIENT_PORT))
        sink.setblocking(False)
        self._sink = sink
        log.debug("DHCP client on %s (ifindex %d, %s)", self.ifname, ifindex, self.mac)

    def _next_deadline(self) -> float:
        deadline = self._next_tx
        lease = self.current
        if lease is not None:
            deadline = min(deadline, lease.at(lease.t1_s), lease.at(lease.t2_s), lease.at(lease.lease_s))
        return deadline

    # --- carrier -----------------------------------------------------------------------------------------

    def _read_carrier(self) -> bool:
        try:
            return Path(f"/sys/class/net/{self.ifname}/carrier").read_text().strip() == "1"
        except OSError:  # EINVAL while the interface is administratively down
            return False

    def _check_carrier(self, now: float) -> None:
        carrier = self._read_carrier()
        if carrier == self._carrier:
            return
        self._carrier = carrier
        if not carrier:
            log.info("DHCP client: %s lost carrier, pausing", self.ifname)
            self._next_tx = float("inf")
            return
        log.info("DHCP client: %s has carrier", self.ifname)
        if self.current is not None and now < self.current.at(self.current.lease_s):
            self._start_reboot(now)
        else:
            self._drop(None)
            self.state = State.INIT

    # --- timers ------------------------------------------------------------------------------------------

    def _on_timers(self, now: float) -> None:
        if self._check_expiry(now):
            return
        lease = self.current
        if self.state == State.INIT:
            self._start_discover(now)
        elif self.state in (State.BOUND, State.RENEWING) and lease is not None and "no_renewal" not in self.faults:
            if now >= lease.at(lease.t2_s) and self.state != State.REBINDING:
                self._enter_renew_or_rebind(State.REBINDING, now)
            elif self.state == State.BOUND and now >= lease.at(lease.t1_s):
                self._enter_renew_or_rebind(State.RENEWING, now)
        if now >= self._next_tx:
            self._retransmit(now)

    def _check_expiry(self, now: float) -> bool:
        lease = self.current
        if lease is None or now < lease.at(lease.lease_s):
            return False
        log.info("DHCP client: lease of %s expired", lease.ip)
        self._emit("dhcp", {"state": "expired", "server": lease.server, "lease_s": lease.lease_s})
        self._drop(lease)
        self.state = State.INIT
        self._next_tx = float("inf")
        return True

    def _retransmit(self, now: float) -> None:
        lease = self.current
        if self.state == State.SELECTING:
            self._send_discover(now)
        elif self.state == State.REQUESTING:
            if self._tries >= REQUEST_TRIES:
                log.info("DHCP client: no ACK after %d REQUESTs, rediscovering", self._tries)
                self.state = State.INIT
                self._next_tx = float("inf")
                return
            self._send_select_request(now)
        elif self.state == State.REBOOTING:
            if self._tries >= REBOOT_TRIES:
                # RFC 2131 3.7: no answer after a reboot; keep using the unexpired lease.
                self.state = State.BOUND
                self._next_tx = float("inf")
                return
            self._send_reboot_request(now)
        elif self.state in (State.RENEWING, State.REBINDING) and lease is not None:
            self._send_renewal(now)

    def _backoff(self) -> float:
        base = min(RETRY_FIRST_S * 2 ** max(self._tries - 1, 0), RETRY_MAX_S)
        return base * random.uniform(0.9, 1.1)

    # --- transitions -------------------------------------------------------------------------------------

    def _start_discover(self, now: float) -> None:
        self._xid = random.getrandbits(32)
        self._started = now
        self._tries = 0
        self._offer = None
        self.state = State.SELECTING
        self._send_discover(now)

    def _start_reboot(self, now: float) -> None:
        self._xid = random.getrandbits(32)
        self._started = now
        self._tries = 0
        self.state = State.REBOOTING
        self._send_reboot_request(now)

    def _enter_renew_or_rebind(self, state: State, now: float) -> None:
        lease = self.current
        assert lease is not None
        self.state = state
        self._xid = random.getrandbits(32)
        self._started = now
        self._tries = 0
        self._emit("dhcp", {"state": state.value, "server": lease.server, "lease_s": lease.lease_s})
        self._send_renewal(now)

    def _bind(self, ack: DhcpMessage, server_mac: str) -> None:
        lease_s = ack.u32(Opt.LEASE_TIME) or INFINITE_LEASE
        t1 = ack.u32(Opt.RENEWAL_T1)
        t2 = ack.u32(Opt.REBINDING_T2)
        netmask = ack.ip(Opt.SUBNET_MASK) or "255.255.255.0"
        routers = ack.ips(Opt.ROUTER)
        server = ack.ip(Opt.SERVER_ID) or (self.current.server if self.current else ZERO_IP)
        lease = Lease(
            ip=ack.yiaddr, netmask=netmask, gateway=routers[0] if routers else None, dns=tuple(ack.ips(Opt.DNS)),
            server=server, server_mac=server_mac, lease_s=lease_s,
            t1_s=float(t1) if t1 is not None else lease_s * 0.5,
            t2_s=float(t2) if t2 is not None else lease_s * 0.875,
            acquired=self._started,
        )  # fmt: skip
        old = self.current
        if old is not None and old.ip != lease.ip:
            self._drop(old)
            old = None
        self._apply(lease, old)
        self.current = lease
        self.state = State.BOUND
        self._next_tx = float("inf")
        if old is None:
            self._emit(
                "got_ip",
                {
                    "ip": lease.ip, "netmask": lease.netmask, "gw": lease.gateway or ZERO_IP, "lease_s": lease.lease_s,
                    "server": lease.server, "dns": list(lease.dns),
                },
            )  # fmt: skip
        self._emit("dhcp", {"state": "bound", "server": lease.server, "lease_s": lease.lease_s})

    def _on_nak(self, nak: DhcpMessage) -> None:
        server = nak.ip(Opt.SERVER_ID) or ZERO_IP
        if "ignore_nak" in self.faults and self.current is not None:
            log.info("DHCP client: ignoring a NAK from %s (fault ignore_nak)", server)
            return
        lease_s = self.current.lease_s if self.current else 0
        self._emit("dhcp", {"state": "nak", "server": server, "lease_s": lease_s})
        self._drop(self.current)
        self.state = State.INIT
        self._next_tx = float("inf")

    # --- receiving ---------------------------------------------------------------------------------------

    def _receive_all(self) -> None:
        assert self._sock is not None
        while True:
            try:
                frame = self._sock.recv(4096)
            except BlockingIOError:
                return
            except OSError as exc:
                # The interface was taken down under the socket: nothing to read now; carrier handling follows.
                if exc.errno == errno.ENETDOWN:
                    return
                raise
            try:
                udp = parse_udp_frame(frame)
                if udp.dst_port != CLIENT_PORT or udp.src_port != SERVER_PORT:
                    continue
                msg = DhcpMessage.decode(udp.payload)
            except MalformedPacket as exc:
                log.debug("DHCP client: ignored a frame: %s", exc)
                continue
            if msg.op == BOOTREPLY and msg.xid == self._xid and msg.chaddr == self.mac:
                self._on_reply(msg, udp.src_mac)

    def _on_reply(self, msg: DhcpMessage, src_mac: str) -> None:
        kind = msg.msg_type
        if self.state == State.SELECTING and kind == MessageType.OFFER and msg.ip(Opt.SERVER_ID):
            self._offer = msg
            self._offer_mac = src_mac
            self.state = State.REQUESTING
            self._tries = 0
            self._send_select_request(time.monotonic())
        elif self.state in (State.REQUESTING, State.RENEWING, State.REBINDING, State.REBOOTING):
            if kind == MessageType.ACK and msg.yiaddr != ZERO_IP:
                self._bind(msg, src_mac)
            elif kind == MessageType.NAK:
                self._on_nak(msg)

    # --- sending -----------------------------------------------------------------------------------------

    def _request(self, kind: MessageType, now: float, ciaddr: str = ZERO_IP, extra=()) -> DhcpMessage:
        options = build_options(
            kind,
            [
                (Opt.CLIENT_ID, b"\x01" + mac_to_bytes(self.mac)),
                *extra,
                (Opt.HOSTNAME, self.hostname.encode()),
                (Opt.PARAM_LIST, PARAMS_REQUESTED),
            ],
        )
        secs = min(int(now - self._started), 0xFFFF)
        return DhcpMessage(op=BOOTREQUEST, xid=self._xid, chaddr=self.mac, secs=secs, ciaddr=ciaddr, options=options)

    def _send_discover(self, now: float) -> None:
        self._transmit(self._request(MessageType.DISCOVER, now), now)

    def _send_select_request(self, now: float) -> None:
        offer = self._offer
        assert offer is not None
        extra = [(Opt.REQUESTED_IP, ip_bytes(offer.yiaddr)), (Opt.SERVER_ID, ip_bytes(offer.ip(Opt.SERVER_ID) or ""))]
        self._transmit(self._request(MessageType.REQUEST, now, extra=extra), now)

    def _send_reboot_request(self, now: float) -> None:
        assert self.current is not None
        extra = [(Opt.REQUESTED_IP, ip_bytes(self.current.ip))]
        self._transmit(self._request(MessageType.REQUEST, now, extra=extra), now)

    def _send_renewal(self, now: float) -> None:
        lease = self.current
        assert lease is not None
        msg = self._request(MessageType.REQUEST, now, ciaddr=lease.ip)
        if self.state == State.RENEWING:
            self._transmit(msg, now, src_ip=lease.ip, dst_ip=lease.server, dst_mac=lease.server_mac)
            until = lease.at(lease.t2_s)
        else:
            self._transmit(msg, now, src_ip=lease.ip)
            until = lease.at(lease.lease_s)
        # RFC 2131 4.4.5: retransmit after half the time left to the next deadline.
        self._next_tx = now + max(RENEW_RETRY_MIN_S, (until - now) / 2)

    def _transmit(
        self, msg: DhcpMessage, now: float, *, src_ip: str = ZERO_IP, dst_ip: str = BROADCAST_IP,
        dst_mac: str = BROADCAST_MAC,
    ) -> None:  # fmt: skip
        assert self._sock is not None
        frame = udp_frame(self.mac, dst_mac, src_ip, dst_ip, CLIENT_PORT, SERVER_PORT, msg.encode())
        try:
            self._sock.send(frame)
        except OSError as exc:  # e.g. ENETDOWN in the instant the link drops; the retry covers it
            log.info("DHCP client: send failed: %s", exc)
        self._tries += 1
        self._next_tx = now + self._backoff()

    # --- applying the lease ------------------------------------------------------------------------------

    def _apply(self, lease: Lease, old: Lease | None) -> None:
        _ip("addr", "replace", f"{lease.ip}/{lease.prefixlen}", "dev", self.ifname)
        if lease.gateway:
            _ip("route", "replace", "default", "via", lease.gateway, "dev", self.ifname)
        elif old is not None and old.gateway:
            _ip("route", "del", "default", "via", old.gateway, "dev", self.ifname, check=False)

    def _drop(self, lease: Lease | None) -> None:
        """Remove ``lease`` (the current one when None) from the interface and say so."""
        lease = lease or self.current
        if lease is None:
            return
        if lease.gateway:
            _ip("route", "del", "default", "via", lease.gateway, "dev", self.ifname, check=False)
        _ip("addr", "del", f"{lease.ip}/{lease.prefixlen}", "dev", self.ifname, check=False)
        if self.current is lease:
            self.current = None
        self._emit("lost_ip", {"ip": lease.ip})

    def _emit(self, name: str, fields: dict) -> None:
        try:
            self.on_event(name, fields)
        except Exception:  # the observer's bug must not take the network down
            log.exception("DHCP client: on_event(%s) failed", name)


def _ip(*args: str, check: bool = True) -> None:
    # A SIGTERM to the board's process group must not kill `ip` halfway through applying a lease: the
    # child inherits the blocked mask (its own session alone still leaves the window before setsid()),
    # and this process takes the signal once the command is done.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        done = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=IP_COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    if check and done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")


def _interface_mac(ifname: str) -> str:
    return Path(f"/sys/class/net/{ifname}/address").read_text().strip()


def main(argv: list[str] | None = None) -> int:
    """Stand-alone client: one JSON line per event on stdout; SIGTERM/SIGINT stop it cleanly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ifname", default="eth0")
    parser.add_argument("--mac", help="default: the interface's own MAC")
    parser.add_argument("--hostname", default="esp32p4-hil")
    parser.add_argument("--fault", action="append", default=[], choices=sorted(FAULTS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("HIL_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def print_event(name: str, fields: dict) -> None:
        print(json.dumps({"event": name, "mono": time.monotonic(), **fields}), flush=True)

    client = DhcpClient(
        args.ifname, args.mac or _interface_mac(args.ifname), on_event=print_event, hostname=args.hostname,
        faults=frozenset(args.fault),
    )  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        client.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
