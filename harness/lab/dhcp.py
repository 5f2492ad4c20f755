"""The lab's scriptable DHCPv4 server: leases for the DUT, every exchange recorded, edge cases on demand.

It runs on a thread inside the host-side namespace and serves one interface through a UDP socket
bound to that device. Safety first: it refuses to start on an interface outside a `hil-` namespace,
or in a namespace that can reach any network besides the lab subnet, unless forced (`--dhcp-force`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from harness.errors import DutTimeoutError, LabError
from harness.lab.base import LabAddressing
from harness.lab.dhcp_packet import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_IP,
    CLIENT_PORT,
    SERVER_PORT,
    ZERO_IP,
    DhcpMessage,
    MalformedPacket,
    MessageType,
    Opt,
    build_options,
    describe,
    ip_bytes,
    u32_bytes,
)
from harness.lab.netns import PREFIX, Namespace

log = logging.getLogger(__name__)

POLL_S = 0.2  # socket timeout: how quickly stop() is noticed
IP_PKTINFO = 8


@dataclass(frozen=True)
class DhcpBehaviour:
    """What the server does, as data; assign a new one to `DhcpServer.behaviour` at any time.

    Attributes:
        lease_s: lease time offered (option 51).
        t1_s: renewal time (option 58); None leaves it out (clients use lease/2).
        t2_s: rebinding time (option 59); None leaves it out (clients use 7/8 of the lease).
        dns: DNS servers offered (option 6); empty leaves the option out.
        router: whether to offer the server's address as the default gateway (option 3).
        silent: ignore every message, like a server that has gone away (messages are still recorded).
        nak_renewals: answer every REQUEST that carries ciaddr (renewing or rebinding) with a NAK.
        ignore_renewals: stay silent to unicast renewals (RENEWING at T1); rebinding broadcasts get answers.
    """

    lease_s: int = 3600
    t1_s: int | None = None
    t2_s: int | None = None
    dns: tuple[str, ...] = ("10.77.0.1",)
    router: bool = True
    silent: bool = False
    nak_renewals: bool = False
    ignore_renewals: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dns", tuple(self.dns))
        if self.lease_s <= 0:
            raise LabError(f"DHCP lease_s must be positive, got {self.lease_s}")
        t1 = self.t1_s if self.t1_s is not None else self.lease_s / 2
        t2 = self.t2_s if self.t2_s is not None else self.lease_s * 7 / 8
        if not 0 < t1 <= t2 <= self.lease_s:
            raise LabError(f"DHCP times must satisfy 0 < T1 <= T2 <= lease; got T1={t1} T2={t2} lease={self.lease_s}")
        for server in self.dns:
            ipaddress.IPv4Address(server)


@dataclass(frozen=True)
class Exchange:
    """One DHCP message the server received or sent.

    Attributes:
        msg_type: DISCOVER, OFFER, REQUEST, ACK, NAK, RELEASE, DECLINE or INFORM.
        direction: "rx" (from a client) or "tx" (from the server).
        mono: time.monotonic() when received or sent.
        wall: time.time() at the same moment.
        mac: the client's hardware address (chaddr).
        xid: transaction id.
        kind: for REQUEST: selecting, renewing, rebinding or init-reboot; otherwise "".
        ciaddr, yiaddr: header addresses.
        requested_ip, server_id: options 50 and 54 ("" when absent).
        src_ip, dst_ip: IP addresses of the datagram.
        lease_s: option 51 when present, else None.
        ignored: why the server did not answer this message ("" when it answered or it is a reply).
    """

    msg_type: str
    direction: str
    mono: float
    wall: float
    mac: str
    xid: int
    kind: str = ""
    ciaddr: str = ZERO_IP
    yiaddr: str = ZERO_IP
    requested_ip: str = ""
    server_id: str = ""
    src_ip: str = ""
    dst_ip: str = ""
    lease_s: int | None = None
    hostname: str = ""
    ignored: str = ""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, for logs and results files."""
        return dataclasses.asdict(self)


@dataclass
class Lease:
    """What the server has granted one client."""

    mac: str
    ip: str
    expires_mono: float
    state: str = "offered"  # offered, bound, released, declined

    def active(self, now: float) -> bool:
        """Whether the address is still the client's to use."""
        return self.state == "bound" and now < self.expires_mono


@dataclass
class _Counters:
    received: int = 0
    malformed: int = 0
    errors: int = 0
    last_malformed: str = ""


class DhcpServer:
    """A DHCPv4 server for one lab interface.

    Args:
        ns: the namespace holding ``ifname`` (the lab's host side).
        ifname: the interface to serve (it must carry ``addressing.host_ip``).
        addressing: subnet, server address and pool.
        lease_s, t1_s, t2_s, dns, router: the initial `DhcpBehaviour` (``dns`` defaults to the server's address).
        force: serve even outside a `hil-` namespace or next to foreign routes (`--dhcp-force`).
    """

    def __init__(
        self,
        ns: Namespace,
        ifname: str,
        addressing: LabAddressing,
        *,
        lease_s: int = 3600,
        t1_s: int | None = None,
        t2_s: int | None = None,
        dns: Sequence[str] | None = None,
        router: bool = True,
        force: bool = False,
    ) -> None:
        self.ns = ns
        self.ifname = ifname
        self.addressing = addressing
        self.force = force
        dns = (addressing.host_ip,) if dns is None else tuple(dns)
        self.behaviour = DhcpBehaviour(lease_s=lease_s, t1_s=t1_s, t2_s=t2_s, dns=dns, router=router)
        self.leases: dict[str, Lease] = {}
        self.counters = _Counters()
        self._exchanges: list[Exchange] = []
        self._changed = threading.Condition()
        self._pool = _pool(addressing)
        self._pool_set = set(self._pool)
        self._declined: set[str] = set()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._future: Future[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> DhcpServer:
        """Check that serving here is safe, open the socket inside the namespace and start serving."""
        if self._future is not None:
            raise LabError("DHCP server already started; call stop() first")
        self.check_safe()
        self._stop.clear()
        self._sock = self.ns.call(self._open_socket, timeout=10)
        self._future = self.ns.submit(self._serve)
        log.info("DHCP server on %s in %s: pool %s-%s", self.ifname, self.ns.name, self._pool[0], self._pool[-1])
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Stop serving (returns within about POLL_S) and close the socket. Safe to call more than once."""
        self._stop.set()
        future, self._future = self._future, None
        if future is not None:
            future.result(timeout=timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def running(self) -> bool:
        """Whether the serving thread is alive."""
        return self._future is not None and not self._future.done()

    def __enter__(self) -> DhcpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def configure(self, **changes: object) -> DhcpBehaviour:
        """Change some behaviour fields at runtime, e.g. ``configure(silent=True)``; returns the new behaviour."""
        self.behaviour = dataclasses.replace(self.behaviour, **changes)  # type: ignore[arg-type]
        return self.behaviour

    # --- safety --------------------------------------------------------------------------------------------

    def check_safe(self) -> None:
        """Raise LabError (with the fix) unless serving ``ifname`` in ``ns`` can only reach the lab."""
        if not self.ns.name.startswith(PREFIX) and not self.force:
            raise LabError(
                f"refusing to run a DHCP server in namespace {self.ns.name!r}: only the project's own `{PREFIX}*` "
                "namespaces are served. Use the lab's host namespace, or pass --dhcp-force if you really mean it"
            )
        try:
            self.ns.call(socket.if_nametoindex, self.ifname, timeout=10)
        except OSError as exc:
            raise LabError(
                f"interface {self.ifname!r} does not exist in namespace {self.ns.name!r}; "
                f"check with `ip -n {self.ns.name} link`"
            ) from exc
        if not self._has_server_address():
            raise LabError(
                f"{self.ifname} in {self.ns.name} does not carry the server address {self.addressing.host_ip}/"
                f"{self.addressing.prefixlen}; add it with `ip -n {self.ns.name} addr add "
                f"{self.addressing.host_ip}/{self.addressing.prefixlen} dev {self.ifname}`"
            )
        foreign = self.foreign_routes()
        if foreign and not self.force:
            raise LabError(
                f"refusing to serve DHCP in {self.ns.name}: it has routes the lab did not create ("
                + "; ".join(foreign)
                + f"), so the server could reach a real network. Remove them (`ip -n {self.ns.name} route del ...`) "
                "or pass --dhcp-force if you really mean it"
            )

    def _has_server_address(self) -> bool:
        data = json.loads(self.ns.ip("-j", "-4", "addr", "show", "dev", self.ifname) or "[]")
        return any(
            a.get("local") == self.addressing.host_ip and a.get("prefixlen") == self.addressing.prefixlen
            for link in data
            for a in link.get("addr_info", [])
        )

    def foreign_routes(self) -> list[str]:
        """Routes in the namespace other than the lab subnet, IPv6 link-local and the kernel's local table."""
        lab_net = ipaddress.ip_network(self.addressing.subnet)
        found: list[str] = []
        for family in ("-4", "-6"):
            for route in json.loads(self.ns.ip("-j", family, "route", "show", "table", "all") or "[]"):
                if route.get("table") == "local" or route.get("type", "unicast") not in ("unicast",):
                    continue
                dst = route.get("dst", "")
                net = ipaddress.ip_network("0.0.0.0/0" if dst == "default" else dst, strict=False)
                if net == lab_net or (net.version == 6 and net.subnet_of(ipaddress.ip_network("fe80::/64"))):
                    continue
                found.append(
                    f"{dst} dev {route.get('dev', '?')}" + (f" via {route['gateway']}" if "gateway" in route else "")
                )
        return found

    # --- records -------------------------------------------------------------------------------------------

    @property
    def exchanges(self) -> list[Exchange]:
        """Every message seen or sent so far, oldest first (a copy)."""
        with self._changed:
            return list(self._exchanges)

    def wait_for(
        self,
        msg_type: str | MessageType,
        *,
        since: float | None = None,
        predicate: Callable[[Exchange], bool] | None = None,
        timeout: float,
    ) -> Exchange:
        """The first recorded ``msg_type`` at or after monotonic time ``since`` that satisfies ``predicate``.

        Raises:
            DutTimeoutError: none arrived within ``timeout`` seconds.
        """
        name = msg_type.name if isinstance(msg_type, MessageType) else str(msg_type).upper()
        if name not in MessageType.__members__:
            raise ValueError(f"unknown DHCP message type {msg_type!r}; use one of {', '.join(MessageType.__members__)}")
        deadline = time.monotonic() + timeout

        def match() -> Exchange | None:
            for ex in self._exchanges:
                if ex.msg_type == name and (since is None or ex.mono >= since) and (predicate is None or predicate(ex)):
                    return ex
            return None

        with self._changed:
            while (found := match()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    recent = ", ".join(
                        f"{e.msg_type}{'/' + e.kind if e.kind else ''}@{e.mono - (since or 0):+.2f}s"
                        for e in self._exchanges[-8:]
                    )
                    raise DutTimeoutError(
                        f"no DHCP {name}{' matching the condition' if predicate else ''} on {self.ifname} within "
                        f"{timeout:.1f} s; last exchanges: {recent or 'none'}. Is the DUT's DHCP client running "
                        "and its link up?"
                    )
                self._changed.wait(min(remaining, 0.5))
        return found

    def lease_time_s(self, *, since: float | None = None, mac: str | None = None, timeout: float = 15.0) -> float:
        """Seconds from a client's first DISCOVER (at/after ``since``) to the ACK that completes its lease."""
        discover = self.wait_for(
            "DISCOVER", since=since, predicate=lambda e: mac is None or e.mac == mac, timeout=timeout
        )
        ack = self.wait_for(
            "ACK",
            since=discover.mono,
            predicate=lambda e: e.mac == discover.mac and e.direction == "tx",
            timeout=timeout,
        )
        return ack.mono - discover.mono

    def _record(self, ex: Exchange) -> None:
        with self._changed:
            self._exchanges.append(ex)
            self._changed.notify_all()
        log.debug("dhcp %s %s", ex.direction, ex)

    # --- serving -------------------------------------------------------------------------------------------

    def _open_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind(("0.0.0.0", SERVER_PORT))
        except OSError as exc:
            sock.close()
            raise LabError(f"cannot open the DHCP server socket on {self.ifname} in {self.ns.name}: {exc}") from exc
        sock.settimeout(POLL_S)
        return sock

    def _serve(self) -> None:
        assert self._sock is not None
        sock = self._sock
        while not self._stop.is_set():
            try:
                data, ancdata, _flags, (src_ip, _port) = sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                self.counters.errors += 1
                log.warning("DHCP server receive error on %s: %s", self.ifname, exc)
                continue
            self.counters.received += 1
            try:
                self._handle(data, src_ip, _pktinfo_dst(ancdata))
            except MalformedPacket as exc:
                self.counters.malformed += 1
                self.counters.last_malformed = str(exc)
                log.info("DHCP server ignored a malformed message from %s: %s", src_ip, exc)
            except Exception:  # one bad message must never stop the lab's server
                self.counters.errors += 1
                log.exception("DHCP server failed to handle a message from %s", src_ip)

    def _handle(self, data: bytes, src_ip: str, dst_ip: str) -> None:
        msg = DhcpMessage.decode(data)
        if msg.op != BOOTREQUEST:
            raise MalformedPacket("a BOOTREPLY was sent to the server port")
        kind = msg.msg_type
        if kind is None or kind in (MessageType.OFFER, MessageType.ACK, MessageType.NAK):
            raise MalformedPacket(
                f"option 53 is missing or not a client message ({msg.options.get(Opt.MESSAGE_TYPE)!r})"
            )
        behaviour = self.behaviour
        request_kind = _request_kind(msg, dst_ip) if kind == MessageType.REQUEST else ""
        reply, why_not = self._decide(msg, kind, request_kind, behaviour)
        now = time.monotonic()
        self._record(
            Exchange(
                msg_type=kind.name, direction="rx", mono=now, wall=time.time(), mac=msg.chaddr, xid=msg.xid,
                kind=request_kind, ciaddr=msg.ciaddr, yiaddr=msg.yiaddr,
                requested_ip=msg.ip(Opt.REQUESTED_IP) or "", server_id=msg.ip(Opt.SERVER_ID) or "",
                src_ip=src_ip, dst_ip=dst_ip, lease_s=msg.u32(Opt.LEASE_TIME), hostname=msg.text(Opt.HOSTNAME) or "",
                ignored=why_not,
            )
        )  # fmt: skip
        if reply is not None:
            self._send(reply, msg)

    def _decide(
        self, msg: DhcpMessage, kind: MessageType, request_kind: str, behaviour: DhcpBehaviour
    ) -> tuple[DhcpMessage | None, str]:
        """The reply to ``msg`` (or None) and, when there is none, why."""
        if behaviour.silent:
            return None, "silent"
        now = time.monotonic()
        if kind == MessageType.DISCOVER:
            ip = self._choose_address(msg.chaddr, msg.ip(Opt.REQUESTED_IP), now)
            if ip is None:
                return None, "pool exhausted"
            self.leases[msg.chaddr] = Lease(msg.chaddr, ip, now + 60, "offered")
            return self._reply(msg, MessageType.OFFER, ip, behaviour), ""
        if kind == MessageType.REQUEST:
            return self._answer_request(msg, request_kind, behaviour, now)
        if kind == MessageType.RELEASE:
            lease = self.leases.get(msg.chaddr)
            if lease is not None and lease.ip == msg.ciaddr:
                lease.state = "released"
            return None, "no reply to RELEASE"
        if kind == MessageType.DECLINE:
            declined = msg.ip(Opt.REQUESTED_IP)
            if declined:
                self._declined.add(declined)
            self.leases.pop(msg.chaddr, None)
            return None, "no reply to DECLINE"
        # INFORM: configuration only, no lease.
        reply = self._reply(msg, MessageType.ACK, ZERO_IP, behaviour, with_lease=False)
        return reply, ""

    def _answer_request(
        self, msg: DhcpMessage, request_kind: str, behaviour: DhcpBehaviour, now: float
    ) -> tuple[DhcpMessage | None, str]:
        server_id = msg.ip(Opt.SERVER_ID)
        if request_kind == "selecting" and server_id != self.addressing.host_ip:
            self.leases.pop(msg.chaddr, None)
            return None, f"client selected server {server_id}"
        if request_kind in ("renewing", "rebinding"):
            if behaviour.ignore_renewals and request_kind == "renewing":
                return None, "ignore_renewals"
            if behaviour.nak_renewals:
                return self._nak(msg, "renewals are refused (nak_renewals)"), ""
        wanted = msg.ciaddr if request_kind in ("renewing", "rebinding") else msg.ip(Opt.REQUESTED_IP)
        if wanted is None:
            return self._nak(msg, "no requested address"), ""
        lease = self.leases.get(msg.chaddr)
        ours = lease is not None and lease.ip == wanted
        if not ours and not self._free(wanted, msg.chaddr, now):
            return self._nak(msg, f"{wanted} is not available to this client"), ""
        self.leases[msg.chaddr] = Lease(msg.chaddr, wanted, now + behaviour.lease_s, "bound")
        return self._reply(msg, MessageType.ACK, wanted, behaviour), ""

    def _free(self, ip: str, mac: str, now: float) -> bool:
        if ip not in self._pool_set or ip in self._declined:
            return False
        return all(lease.ip != ip or lease.mac == mac for lease in self.leases.values())

    def _choose_address(self, mac: str, requested: str | None, now: float) -> str | None:
        known = self.leases.get(mac)
        if known is not None and known.ip not in self._declined:
            return known.ip  # stable: the same MAC always gets the same address back
        if requested and self._free(requested, mac, now):
            return requested
        taken = {lease.ip for lease in self.leases.values()}
        for ip in self._pool:
            if ip not in taken and ip not in self._declined:
                return ip
        # Pool full: reclaim an address whose holder let it lapse.
        for other in list(self.leases.values()):
            if not other.active(now) and other.ip not in self._declined:
                del self.leases[other.mac]
                return other.ip
        return None

    def _reply(
        self, request: DhcpMessage, kind: MessageType, yiaddr: str, behaviour: DhcpBehaviour, *, with_lease: bool = True
    ) -> DhcpMessage:
        extra: list[tuple[int, bytes]] = [(Opt.SERVER_ID, ip_bytes(self.addressing.host_ip))]
        if with_lease:
            extra.append((Opt.LEASE_TIME, u32_bytes(behaviour.lease_s)))
            if behaviour.t1_s is not None:
                extra.append((Opt.RENEWAL_T1, u32_bytes(behaviour.t1_s)))
            if behaviour.t2_s is not None:
                extra.append((Opt.REBINDING_T2, u32_bytes(behaviour.t2_s)))
        extra.append((Opt.SUBNET_MASK, ip_bytes(self.addressing.netmask)))
        if behaviour.router:
            extra.append((Opt.ROUTER, ip_bytes(self.addressing.host_ip)))
        if behaviour.dns:
            extra.append((Opt.DNS, ip_bytes(*behaviour.dns)))
        return DhcpMessage(
            op=BOOTREPLY, xid=request.xid, chaddr=request.chaddr, flags=request.flags, ciaddr=request.ciaddr,
            yiaddr=yiaddr, siaddr=self.addressing.host_ip, giaddr=request.giaddr,
            options=build_options(kind, extra),
        )  # fmt: skip

    def _nak(self, request: DhcpMessage, reason: str) -> DhcpMessage:
        lease = self.leases.get(request.chaddr)
        if lease is not None:
            lease.state = "released"
        return DhcpMessage(
            op=BOOTREPLY, xid=request.xid, chaddr=request.chaddr, flags=request.flags, giaddr=request.giaddr,
            options=build_options(
                MessageType.NAK, [(Opt.SERVER_ID, ip_bytes(self.addressing.host_ip)), (Opt.MESSAGE, reason.encode())]
            ),
        )  # fmt: skip

    def _send(self, reply: DhcpMessage, request: DhcpMessage) -> None:
        # RFC 2131 4.1: a client that has an address gets a unicast; one without (or any NAK) gets a
        # broadcast on the interface, which reaches it before it has an address or ARP entry.
        unicast = request.ciaddr != ZERO_IP and reply.msg_type != MessageType.NAK
        dst = request.ciaddr if unicast else BROADCAST_IP
        assert self._sock is not None
        self._sock.sendto(reply.encode(), (dst, CLIENT_PORT))
        self._record(
            Exchange(
                msg_type=reply.msg_type.name if reply.msg_type else "?", direction="tx", mono=time.monotonic(),
                wall=time.time(), mac=reply.chaddr, xid=reply.xid, ciaddr=reply.ciaddr, yiaddr=reply.yiaddr,
                server_id=self.addressing.host_ip, src_ip=self.addressing.host_ip, dst_ip=dst,
                lease_s=reply.u32(Opt.LEASE_TIME),
            )
        )  # fmt: skip
        log.info("dhcp -> %s %s", dst, describe(reply))


def _request_kind(msg: DhcpMessage, dst_ip: str) -> str:
    """RFC 2131 4.3.2: tell the four kinds of REQUEST apart by server id, requested IP, ciaddr and destination."""
    if msg.ip(Opt.SERVER_ID) is not None:
        return "selecting"
    if msg.ciaddr == ZERO_IP:
        return "init-reboot"
    return "rebinding" if dst_ip == BROADCAST_IP else "renewing"


def _pktinfo_dst(ancdata: list[tuple[int, int, bytes]]) -> str:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }: addr is the header's destination.
            return socket.inet_ntoa(data[8:12])
    return ""


def _pool(addressing: LabAddressing) -> list[str]:
    start = ipaddress.IPv4Address(addressing.pool_start)
    end = ipaddress.IPv4Address(addressing.pool_end)
    subnet = ipaddress.IPv4Network(addressing.subnet)
    if start not in subnet or end not in subnet or end < start:
        raise LabError(
            f"DHCP pool {start}-{end} must lie inside the lab subnet {subnet} with start <= end; fix the lab addressing"
        )
    server = ipaddress.IPv4Address(addressing.host_ip)
    return [str(ipaddress.IPv4Address(n)) for n in range(int(start), int(end) + 1) if n != int(server)]
