"""The lab on a real NIC: the host NIC cabled to a real board, moved into the run's own namespace.

The NIC is moved into `hil-<run>-host` (`ip link set <nic> netns ...`) and configured there, so the DHCP
server, every peer and every traffic client run inside that namespace exactly as with the virtual lab,
and nothing the lab does can reach the machine's other networks. Its previous state (addresses, MTU,
routes, up/down) is recorded first and put back at `close()`.

Before taking the NIC: it must exist, carry no default route and no address outside the lab subnet, and
no foreign DHCP server may answer on it (one DISCOVER, ~2 s for an OFFER); `force` (`--dhcp-force`)
overrides those refusals. Link speed and duplex are read with ethtool: anything but the expected
100/Full is a warning, and the real rate goes into the `LinkProfile` recorded with the run.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import secrets
import select
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import LabError
from harness.lab.base import LAB_SYSCTLS, Lab, LabAddressing, LinkProfile
from harness.lab.dhcp_packet import (
    BOOTREPLY,
    BOOTREQUEST,
    CLIENT_PORT,
    FLAG_BROADCAST,
    SERVER_PORT,
    DhcpMessage,
    MalformedPacket,
    MessageType,
    Opt,
    build_options,
)
from harness.lab.netns import Namespace, delete_namespace, require_tools, run_command

log = logging.getLogger(__name__)

DHCP_PROBE_S = 2.0
LINK_WAIT_S = 5.0


@dataclass(frozen=True)
class NicLinkProfile(LinkProfile):
    """A real cable: the rate is what the NIC negotiated, nothing is shaped."""

    nic: str = ""
    duplex: str = "full"
    negotiated: bool = True

    def as_dict(self, timestamps: bool = True) -> dict[str, Any]:
        """The link parameters recorded with every run."""
        return {
            **super().as_dict(timestamps),
            "kind": "nic",
            "nic": self.nic,
            "duplex": self.duplex,
            "negotiated": self.negotiated,
        }


@dataclass(frozen=True)
class EthtoolInfo:
    """What `ethtool <nic>` says about the link."""

    speed_mbit: int | None
    duplex: str | None
    link: bool | None

    @classmethod
    def parse(cls, text: str) -> EthtoolInfo:
        """Parse ethtool's settings output (`Speed: 100Mb/s`, `Duplex: Full`, `Link detected: yes`)."""
        speed = re.search(r"Speed:\s*(\d+)\s*Mb/s", text)
        duplex = re.search(r"Duplex:\s*(Full|Half)", text, re.IGNORECASE)
        link = re.search(r"Link detected:\s*(yes|no)", text)
        return cls(
            int(speed.group(1)) if speed else None,
            duplex.group(1).lower() if duplex else None,
            (link.group(1) == "yes") if link else None,
        )


@dataclass
class NicState:
    """A NIC's configuration as found, to put back afterwards."""

    ifname: str
    mtu: int
    up: bool
    addresses: list[tuple[str, int]] = field(default_factory=list)  # (address, prefixlen), link-local left out
    routes: list[dict[str, Any]] = field(default_factory=list)  # static routes through the NIC

    def comparable(self) -> tuple[Any, ...]:
        """The parts a restore must reproduce exactly."""
        return (self.mtu, self.up, sorted(self.addresses), sorted(json.dumps(r, sort_keys=True) for r in self.routes))


def _ip(ns: Namespace | None, *args: str, check: bool = True) -> str:
    return run_command(["ip", *(["-n", ns.name] if ns else []), *args], check=check)


def read_nic_state(ifname: str, ns: Namespace | None = None) -> NicState:
    """Record ``ifname``'s MTU, up/down, addresses and static routes (in ``ns``, default: this process's namespace)."""
    links = json.loads(_ip(ns, "-j", "addr", "show", "dev", ifname) or "[]")
    if not links:
        raise LabError(f"interface {ifname} not found")
    link = links[0]
    addresses = [
        (a["local"], int(a["prefixlen"]))
        for a in link.get("addr_info", [])
        if not (a.get("family") == "inet6" and a.get("scope") == "link")
    ]
    routes = []
    for family in ("-4", "-6"):
        for route in json.loads(_ip(ns, "-j", family, "route", "show", "dev", ifname) or "[]"):
            if route.get("protocol") in ("kernel", "ra") or route.get("dst", "").startswith("fe80"):
                continue  # made by the kernel from an address; comes back with it
            kept = {k: route[k] for k in ("dst", "gateway", "metric") if k in route}
            kept["family"] = family
            routes.append(kept)
    return NicState(ifname, int(link["mtu"]), "UP" in link.get("flags", []), addresses, routes)


def restore_nic_state(state: NicState, ns: Namespace | None = None) -> list[str]:
    """Put ``state`` back on the NIC; returns what could not be restored (empty when all went back)."""
    problems: list[str] = []

    def attempt(*args: str) -> None:
        try:
            _ip(ns, *args)
        except LabError as exc:
            problems.append(str(exc))

    attempt("addr", "flush", "dev", state.ifname, "scope", "global")
    attempt("link", "set", "dev", state.ifname, "mtu", str(state.mtu))
    for address, prefixlen in state.addresses:
        attempt("addr", "add", f"{address}/{prefixlen}", "dev", state.ifname)
    attempt("link", "set", "dev", state.ifname, "up" if state.up else "down")
    for route in state.routes:
        args = [route["family"], "route", "replace", route.get("dst", "default")]
        if "gateway" in route:
            args += ["via", route["gateway"]]
        args += ["dev", state.ifname]
        if "metric" in route:
            args += ["metric", str(route["metric"])]
        attempt(*args)
    return problems


def probe_foreign_dhcp(ns: Namespace, ifname: str, timeout: float = DHCP_PROBE_S) -> list[str]:
    """Send one DISCOVER on ``ifname`` inside ``ns``; return the servers that OFFER within ``timeout`` seconds."""
    # /sys shows the namespace the mount was made in, not the thread's: ask `ip` for the MAC instead.
    links = json.loads(ns.ip("-j", "link", "show", "dev", ifname) or "[]")
    if not links or "address" not in links[0]:
        raise LabError(f"cannot read the MAC of {ifname} in {ns.name}")
    return ns.call(_probe, ifname, links[0]["address"], timeout, timeout=timeout + 10)


def _probe(ifname: str, mac: str, timeout: float) -> list[str]:
    xid = secrets.randbits(32)
    discover = DhcpMessage(
        op=BOOTREQUEST,
        xid=xid,
        chaddr=mac,
        flags=FLAG_BROADCAST,
        options=build_options(MessageType.DISCOVER, [(Opt.PARAM_LIST, bytes((1, 3, 6)))]),
    )
    servers: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        sock.bind(("0.0.0.0", CLIENT_PORT))
        sock.sendto(discover.encode(), ("255.255.255.255", SERVER_PORT))
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], remaining)
            if not ready:
                break
            data, (src, _port) = sock.recvfrom(4096)
            try:
                reply = DhcpMessage.decode(data)
            except MalformedPacket:
                continue
            if reply.op == BOOTREPLY and reply.xid == xid and reply.msg_type == MessageType.OFFER:
                server = reply.ip(Opt.SERVER_ID) or src
                if server not in servers:
                    servers.append(server)
    return servers


class NicLab(Lab):
    """The lab of one run on a real NIC: the NIC, moved into the run's host namespace, is the cable.

    Args:
        nic: the host interface cabled to the board.
        run_id: names the namespace (`hil-<run_id>-host`).
        addressing: the lab subnet; the NIC gets ``addressing.host_ip``.
        mtu: MTU set on the NIC.
        log_dir: where peers' logs go.
        force: take the NIC despite a default route, foreign addresses or a foreign DHCP server (`--dhcp-force`).
        expect_speed_mbit, expect_duplex: what the link should negotiate (a mismatch is a warning).
        home: the namespace the NIC lives in (None: this process's own; tests pass a throwaway one).
        dhcp_probe_s: how long to listen for a foreign DHCP server's OFFER.
    """

    def __init__(
        self,
        nic: str,
        *,
        run_id: str,
        addressing: LabAddressing | None = None,
        mtu: int = 1500,
        log_dir: Path | None = None,
        force: bool = False,
        expect_speed_mbit: int = 100,
        expect_duplex: str = "full",
        home: Namespace | None = None,
        dhcp_probe_s: float = DHCP_PROBE_S,
    ) -> None:
        if not nic:
            raise LabError(
                "a real board needs the host NIC cabled to it: give --eth-iface <nic> (or nic.iface / "
                "boards.<name>.eth_iface in hil.toml); `ip link` lists the interfaces"
            )
        link = NicLinkProfile(rate_mbit=expect_speed_mbit, mtu=mtu, nic=nic)
        super().__init__(run_id, host_if=nic, addressing=addressing, link=link, log_dir=log_dir)
        self.nic = nic
        self.mtu = mtu
        self.force = force
        self.expect_speed_mbit = expect_speed_mbit
        self.expect_duplex = expect_duplex
        self.home = home
        self.dhcp_probe_s = dhcp_probe_s
        self.saved: NicState | None = None
        self.foreign_dhcp: list[str] = []
        self._moved = False

    # --- lifecycle -------------------------------------------------------------------------------------

    def _check(self) -> None:
        """The tools, the privileges, and a NIC that is safe to take (its state is recorded for the restore)."""
        require_tools("ip", "ethtool")
        from harness.privileges import require_lab_privileges

        require_lab_privileges(nic=True)
        self.saved = self._check_nic()

    def namespaces(self) -> list[Namespace]:
        """The host namespace only: the board is on the other end of a real cable."""
        return [self.host]

    def _build(self) -> None:
        """Move the NIC into the lab namespace, configure it, read its link, look for a foreign DHCP server."""
        self._take_nic()
        self._read_ethtool()
        self.foreign_dhcp = probe_foreign_dhcp(self.host, self.nic, self.dhcp_probe_s)
        if self.foreign_dhcp:
            message = (
                f"a DHCP server other than the lab's answers on {self.nic} ({', '.join(self.foreign_dhcp)}): "
                "the NIC is on a real network. Cable the board directly to the NIC (or to a switch with nothing "
                "else on it), or pass --dhcp-force if you really mean to run a second DHCP server there"
            )
            if not self.force:
                raise LabError(message)
            self.warn(message + " (continuing: --dhcp-force)")

    def _check_nic(self) -> NicState:
        where = f"namespace {self.home.name}" if self.home else "this machine"
        try:
            state = read_nic_state(self.nic, self.home)
        except LabError as exc:
            raise LabError(f"no interface {self.nic!r} on {where}: fix --eth-iface (`ip link` lists them)") from exc
        lab_net = ipaddress.ip_network(self.addressing.subnet)
        foreign = [f"{a}/{p}" for a, p in state.addresses if ipaddress.ip_address(a) not in lab_net]
        default = [r for r in state.routes if r.get("dst", "default") == "default"]
        default += [r for r in self._routes_via_default() if r not in default]
        problems = []
        if default:
            problems.append(
                f"it carries the default route ({default[0].get('gateway', 'direct')}), so this machine's "
                "own traffic would be cut off"
            )
        if foreign:
            problems.append(f"it has address(es) outside the lab subnet {lab_net}: {', '.join(foreign)}")
        if problems:
            message = (
                f"refusing to take {self.nic} for the lab: " + "; ".join(problems) + ". Use a NIC reserved for "
                "the board (see ci/RUNNER.md), or pass --dhcp-force to take it anyway (its settings are "
                "restored afterwards)"
            )
            if not self.force:
                raise LabError(message)
            self.warn(message + " (continuing: --dhcp-force)")
        return state

    def _routes_via_default(self) -> list[dict[str, Any]]:
        routes = json.loads(_ip(self.home, "-j", "-4", "route", "show", "default") or "[]")
        return [
            {"dst": "default", **({"gateway": r["gateway"]} if "gateway" in r else {})}
            for r in routes
            if r.get("dev") == self.nic
        ]

    def _read_ethtool(self) -> None:
        # Autonegotiation takes a few seconds after the NIC comes up; wait for carrier, bounded.
        deadline = time.monotonic() + LINK_WAIT_S
        while True:
            info = EthtoolInfo.parse(self.host.run("ethtool", self.nic, check=False))
            if info.link is not False or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # polling the carrier; bounded by the deadline above
        if info.link is False:
            self.warn(f"{self.nic} has no link: is the board powered and the cable plugged in?")
        if info.speed_mbit is None:
            self.warn(f"ethtool reports no speed for {self.nic}; assuming {self.expect_speed_mbit} Mbit/s")
            self.link = NicLinkProfile(
                rate_mbit=self.expect_speed_mbit,
                mtu=self.mtu,
                nic=self.nic,
                duplex=info.duplex or self.expect_duplex,
                negotiated=False,
            )
            return
        if (info.speed_mbit, info.duplex) != (self.expect_speed_mbit, self.expect_duplex):
            self.warn(
                f"{self.nic} negotiated {info.speed_mbit} Mbit/s {info.duplex or '?'}-duplex, not "
                f"{self.expect_speed_mbit}/{self.expect_duplex}: results are measured on the real rate (check the "
                "cable, or `ethtool -s <nic> speed 100 duplex full autoneg on`)"
            )
        self.link = NicLinkProfile(
            rate_mbit=info.speed_mbit, mtu=self.mtu, nic=self.nic, duplex=info.duplex or "unknown"
        )

    def _take_nic(self) -> None:
        run_command(["ip", "netns", "add", self.host.name])
        self.host.ip("link", "set", "lo", "up")
        self.host.run("sysctl", "-q", "-w", *LAB_SYSCTLS)
        _ip(self.home, "link", "set", "dev", self.nic, "netns", self.host.name)
        self._moved = True
        self.host.ip("addr", "flush", "dev", self.nic)
        self.host.ip("link", "set", "dev", self.nic, "mtu", str(self.mtu))
        self.host.ip("addr", "add", f"{self.addressing.host_ip}/{self.addressing.prefixlen}", "dev", self.nic)
        self.host.ip("link", "set", "dev", self.nic, "up")

    def _teardown(self) -> None:
        """Give the NIC back with its old settings and delete the namespace."""
        if self._moved:
            # Give the NIC back explicitly: a physical device would return by itself when the namespace
            # goes, but only after its last user exits, and a virtual one would be destroyed instead.
            home = self.home.name if self.home else str(os.getpid())
            try:
                self.host.ip("link", "set", "dev", self.nic, "netns", home)
                self._moved = False
            except LabError as exc:
                self.warn(f"could not move {self.nic} back: {exc}")
        delete_namespace(self.host.name)
        if self.saved is not None and not self._moved:
            for problem in self._restore():
                self.warn(f"restoring {self.nic}: {problem}")

    def _restore(self) -> list[str]:
        assert self.saved is not None
        # A physical NIC that came back by itself (namespace deleted) may take a moment to reappear.
        deadline = time.monotonic() + 5
        while True:
            try:
                read_nic_state(self.nic, self.home)
                break
            except LabError:
                if time.monotonic() > deadline:
                    return [f"{self.nic} did not come back to {self.home.name if self.home else 'this machine'}"]
                time.sleep(0.1)  # polling for the device to reappear; bounded by the deadline above
        return restore_nic_state(self.saved, self.home)

    def warn(self, message: str) -> None:
        """Note a problem that does not stop the run, and log it at once."""
        super().warn(message)
        log.warning("%s", message)

    def cable_end(self, side: str) -> tuple[Namespace, str]:
        """The host end only: the board's end of a real cable is out of the harness's reach."""
        if side != "host":
            raise LabError(
                "with a real board only the host end of the cable can be switched or counted (side='host'); "
                "the board's own counters come from its console (`stats`)"
            )
        return self.host, self.nic
