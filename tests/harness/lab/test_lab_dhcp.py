"""The lab's DHCP server on a real lab (namespaces, veth, raw sockets), against real clients: the virtual board's
(smoltcp's DHCPv4 socket in the native firmware, run inside the DUT namespace as the board runs it) and busybox
udhcpc. Leases are seconds long so the timers (T1, T2, expiry) play out quickly.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.boards.virtual import stackbuild
from harness.errors import DutTimeoutError, LabError
from harness.lab.dhcp import DhcpBehaviour, DhcpServer, Exchange
from harness.lab.dhcp_packet import (
    BOOTREQUEST,
    BROADCAST_IP,
    BROADCAST_MAC,
    CLIENT_PORT,
    ETH_P_IP,
    SERVER_PORT,
    ZERO_IP,
    DhcpMessage,
    MessageType,
    Opt,
    build_options,
    ip_bytes,
    udp_frame,
)
from harness.lab.netns import Namespace, run_command
from harness.lab.veth import VethLab
from harness.services_program import ServicesProgram

DUT_MAC = "02:00:00:12:34:56"

pytestmark = [
    pytest.mark.needs_lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces, raw sockets)"),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[VethLab]:
    with VethLab() as lab:
        lab.dut.ip("link", "set", lab.dut_if, "address", DUT_MAC)
        lab.dut.ip("link", "set", lab.dut_if, "up")
        yield lab


@pytest.fixture
def make_server(lab: VethLab) -> Iterator[Callable[..., DhcpServer]]:
    servers: list[DhcpServer] = []

    def make(**kwargs: object) -> DhcpServer:
        server = DhcpServer(lab.host, lab.host_if, lab.addressing, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


class Client:
    """The native firmware (smoltcp's DHCP client) in the DUT namespace, with its events."""

    def __init__(self, lab: VethLab, faults: tuple[str, ...]) -> None:
        binary = stackbuild.build_firmware("smoltcp")
        self.program = ServicesProgram(["--udp-echo", "0"], binary=binary, certs=False, mac=DUT_MAC,
                                       netns=lab.dut.name, faults=faults).start()  # fmt: skip

    def wait_event(
        self, name: str, *, after: int = 0, predicate: Callable[[dict], bool] | None = None, timeout: float
    ) -> tuple[int, dict]:
        """The first event ``name`` at index >= ``after`` (and its index)."""
        event = self.program.wait_event(
            lambda e: e["event"] == name and (predicate is None or predicate(e)), timeout=timeout, since=after
        )
        return self.program.events.index(event), event

    def names(self) -> list[str]:
        return [e["event"] for e in self.program.events]

    def address(self) -> str:
        """The address the client holds now (`ip`)."""
        return str(self.program.command("ip")["ip"])

    def stop(self) -> int | None:
        return self.program.close()


@pytest.fixture
def start_client(lab: VethLab) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def start(*faults: str) -> Client:
        client = Client(lab, faults)
        clients.append(client)
        return client

    yield start
    for client in clients:
        assert client.stop() in (0, None), "the firmware did not exit cleanly"
        client.program.__exit__(None, None, None)


def kinds(server: DhcpServer) -> list[str]:
    return [f"{e.msg_type}/{e.kind}" if e.kind else e.msg_type for e in server.exchanges]


# --- leases end to end -----------------------------------------------------------------------------------


def test_lease_end_to_end(lab: VethLab, make_server, start_client) -> None:
    server = make_server()
    client = start_client()
    _, got = client.wait_event("got_ip", timeout=10)
    _, bound = client.wait_event("dhcp", timeout=2)
    pool = (ipaddress.ip_address(lab.addressing.pool_start), ipaddress.ip_address(lab.addressing.pool_end))
    assert pool[0] <= ipaddress.ip_address(got["ip"]) <= pool[1]
    assert got["netmask"] == "255.255.255.0" and got["gw"] == lab.addressing.host_ip and got["lease_s"] == 3600
    assert bound["server"] == lab.addressing.host_ip and bound["state"] == "bound"
    assert client.address() == got["ip"]
    lab.host.run("ping", "-c", "1", "-W", "2", got["ip"])  # the leased address answers

    assert kinds(server)[:4] == ["DISCOVER", "OFFER", "REQUEST/selecting", "ACK"]
    first = server.exchanges[:4]
    assert [e.direction for e in first] == ["rx", "tx", "rx", "tx"]
    assert all(a.mono <= b.mono for a, b in itertools.pairwise(first))
    assert all(abs(e.wall - time.time()) < 60 for e in first)
    assert first[0].mac == DUT_MAC
    assert first[2].requested_ip == got["ip"] and first[2].server_id == lab.addressing.host_ip
    assert first[3].yiaddr == got["ip"]
    assert server.leases[DUT_MAC].state == "bound"

    lease_s = server.lease_time_s(timeout=1)
    assert 0 < lease_s < 5
    print(f"\ndhcp_lease_s (DISCOVER -> ACK on the server) = {lease_s * 1000:.2f} ms")


def test_same_mac_gets_the_same_address_again(lab: VethLab, make_server, start_client) -> None:
    server = make_server()
    first = start_client()
    _, got = first.wait_event("got_ip", timeout=10)
    first.stop()
    first_ack = server.wait_for("ACK", timeout=1)
    second = start_client()
    _, again = second.wait_event("got_ip", timeout=10)
    assert again["ip"] == got["ip"]
    server.wait_for("ACK", since=first_ack.mono + 0.001, timeout=2)  # the server logs its ACK after sending it


def test_renewal_between_t1_and_t2(lab: VethLab, make_server, start_client) -> None:
    server = make_server(lease_s=8, t1_s=4, t2_s=7)
    client = start_client()
    _, got = client.wait_event("got_ip", timeout=10)
    discover = server.wait_for("DISCOVER", timeout=1)
    ack = server.wait_for("ACK", timeout=1)
    renew = server.wait_for("REQUEST", since=ack.mono, timeout=10)
    # The client counts lease time from its first DISCOVER (RFC 2131: from when it sent the request).
    assert discover.mono + 4 - 0.25 <= renew.mono <= ack.mono + 7
    assert renew.kind == "renewing" and renew.ciaddr == got["ip"] and renew.dst_ip == lab.addressing.host_ip
    reply = server.wait_for("ACK", since=renew.mono, timeout=2)
    assert reply.dst_ip == got["ip"]  # unicast to the client's address
    assert "lost_ip" not in client.names()
    assert client.address() == got["ip"]


def test_nak_on_renew_leads_to_rediscovery(lab: VethLab, make_server, start_client) -> None:
    server = make_server(lease_s=6, t1_s=2, t2_s=5)
    server.behaviour = DhcpBehaviour(lease_s=6, t1_s=2, t2_s=5, nak_renewals=True)  # selecting still gets an ACK
    client = start_client()
    index, _ = client.wait_event("got_ip", timeout=10)
    nak = server.wait_for("NAK", timeout=6)
    assert nak.dst_ip == BROADCAST_IP
    rediscover = server.wait_for("DISCOVER", since=nak.mono, timeout=5)
    server.wait_for("ACK", since=rediscover.mono, timeout=5)
    lost, _ = client.wait_event("lost_ip", after=index, timeout=2)
    client.wait_event("got_ip", after=lost, timeout=5)
    assert kinds(server)[4:6] == ["REQUEST/renewing", "NAK"]


def test_server_silent_at_t1_means_rebind_at_t2(lab: VethLab, make_server, start_client) -> None:
    server = make_server(lease_s=8, t1_s=3, t2_s=6)
    server.configure(ignore_renewals=True)
    client = start_client()
    _, got = client.wait_event("got_ip", timeout=10)
    discover = server.wait_for("DISCOVER", timeout=1)
    rebind = server.wait_for("REQUEST", predicate=lambda e: e.kind == "rebinding", timeout=10)
    assert rebind.mono >= discover.mono + 6 - 0.25
    assert rebind.dst_ip == BROADCAST_IP and rebind.ciaddr == got["ip"]
    ignored = [e for e in server.exchanges if e.kind == "renewing"]
    assert ignored and all(e.ignored == "ignore_renewals" and e.mono < rebind.mono for e in ignored)
    server.wait_for("ACK", since=rebind.mono, timeout=2)
    assert "lost_ip" not in client.names()
    assert client.address() == got["ip"]


def test_lease_expiry_drops_address_and_regains_it(lab: VethLab, make_server, start_client) -> None:
    server = make_server(lease_s=5, t1_s=2, t2_s=4)
    client = start_client()
    index, got = client.wait_event("got_ip", timeout=10)
    server.configure(silent=True)  # the server goes away
    lost, _ = client.wait_event("lost_ip", after=index, predicate=lambda e: e["ip"] == got["ip"], timeout=10)
    assert client.address() == "0.0.0.0"
    silent_kinds = {e.kind for e in server.exchanges if e.ignored == "silent" and e.msg_type == "REQUEST"}
    assert silent_kinds == {"renewing", "rebinding"}

    back = time.monotonic()
    server.configure(silent=False)  # ... and comes back
    client.wait_event("got_ip", after=lost, timeout=15)
    server.wait_for("ACK", since=back, timeout=1)
    assert client.address() == got["ip"]


def test_cable_pull_leases_the_same_address_again(lab: VethLab, make_server, start_client) -> None:
    server = make_server()
    client = start_client()
    index, got = client.wait_event("got_ip", timeout=10)
    pulled = time.monotonic()
    # Longer than the kernel's linkwatch batching (1 s): the DUT's link came up a moment ago, and a pull inside
    # that window can reach the firmware as one netlink message saying "up" (measured: 4 pulls of 1.0 s in 5
    # were never seen by the firmware).
    lab.cable_pull(2.0)
    # smoltcp's client starts over when the link comes back (esp_smoltcp restarts it on IFACE_UP): the address
    # goes and comes back.
    again = server.wait_for("ACK", since=pulled, timeout=10)
    assert again.yiaddr == got["ip"]
    lost, _ = client.wait_event("lost_ip", after=index, timeout=5)
    client.wait_event("got_ip", after=lost, predicate=lambda e: e["ip"] == got["ip"], timeout=5)
    assert client.address() == got["ip"]


def test_option_variety_no_router_several_dns(lab: VethLab, make_server, start_client) -> None:
    make_server(router=False, dns=("10.77.0.53", "10.77.0.54", "10.77.0.55"))
    client = start_client()
    _, got = client.wait_event("got_ip", timeout=10)
    assert got["gw"] == ZERO_IP


# --- the firmware's DHCP fault switches (harness/boards/virtual/faults.py) ----------------------------------


def test_fault_no_dhcp_renewal_lets_the_lease_run_out(lab: VethLab, make_server, start_client) -> None:
    server = make_server(lease_s=4, t1_s=1, t2_s=3)
    client = start_client("no_dhcp_renewal")
    index, _ = client.wait_event("got_ip", timeout=10)
    lost, _ = client.wait_event("lost_ip", after=index, timeout=8)
    ack = server.wait_for("ACK", timeout=1)
    requests_while_bound = [e for e in server.exchanges if e.msg_type == "REQUEST" and e.mono > ack.mono]
    assert all(e.kind == "selecting" for e in requests_while_bound), "no_dhcp_renewal must not renew or rebind"
    client.wait_event("got_ip", after=lost, timeout=10)  # it rediscovers after the expiry


def test_fault_dhcp_nak_ignored_keeps_the_address(lab: VethLab, make_server, start_client) -> None:
    server = make_server(lease_s=8, t1_s=1, t2_s=7)
    server.configure(nak_renewals=True)
    client = start_client("dhcp_nak_ignored")
    _, got = client.wait_event("got_ip", timeout=10)
    first = server.wait_for("NAK", timeout=5)
    # It asks again instead of rediscovering: smoltcp retries a renewal no sooner than at T2 (rebinding).
    server.wait_for("NAK", since=first.mono + 0.01, timeout=10)
    assert not [e for e in server.exchanges if e.msg_type == "DISCOVER" and e.mono > first.mono]
    assert "lost_ip" not in client.names()
    assert client.address() == got["ip"]


# --- interop with a third-party client ---------------------------------------------------------------------

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound) ip addr replace "$ip/$mask" dev "$interface"
         echo "BOUND ip=$ip mask=$mask router=$router dns=$dns lease=$lease serverid=$serverid" ;;
  deconfig) ip -4 addr flush dev "$interface" ;;
esac
exit 0
"""


def test_busybox_udhcpc_gets_a_lease_and_releases_it(lab: VethLab, make_server, tmp_path: Path) -> None:
    server = make_server(lease_s=120, dns=("10.77.0.53", "10.77.0.54"))
    script = tmp_path / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    udhcpc = lab.spawn(
        "udhcpc",
        ["busybox", "udhcpc", "-f", "-R", "-t", "3", "-T", "1", "-i", lab.dut_if, "-x", "hostname:bbox",
         "-s", str(script)],
        ns=lab.dut, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in udhcpc.popen.stdout], daemon=True).start()
    try:
        bound = ""
        while not bound.startswith("BOUND"):
            bound = lines.get(timeout=10).strip()
        assert bound == (
            "BOUND ip=10.77.0.100 mask=24 router=10.77.0.1 dns=10.77.0.53 10.77.0.54 lease=120 serverid=10.77.0.1"
        )
        discover = server.wait_for("DISCOVER", predicate=lambda e: e.hostname == "bbox", timeout=1)
        assert server.wait_for("REQUEST", since=discover.mono, timeout=1).kind == "selecting"
        print(f"\nudhcpc DISCOVER -> ACK = {server.lease_time_s(mac=discover.mac, timeout=1) * 1000:.2f} ms")
        udhcpc.stop()  # -R: releases the lease on SIGTERM
        release = server.wait_for("RELEASE", timeout=5)
        assert release.ciaddr == "10.77.0.100" and server.leases[release.mac].state == "released"
    finally:
        udhcpc.stop()
        lab.dut.ip("-4", "addr", "flush", "dev", lab.dut_if)


# --- robustness ---------------------------------------------------------------------------------------------


def _valid_discover() -> DhcpMessage:
    return DhcpMessage(
        op=BOOTREQUEST, xid=0x1234, chaddr="02:00:00:aa:bb:cc", options=build_options(MessageType.DISCOVER)
    )


def _malformed_payloads() -> list[bytes]:
    valid = _valid_discover().encode()
    no_type = DhcpMessage(op=BOOTREQUEST, xid=1, chaddr="02:00:00:aa:bb:cc", options={Opt.HOSTNAME: b"x"}).encode()
    offer = DhcpMessage(op=BOOTREQUEST, xid=1, chaddr="02:00:00:aa:bb:cc", options=build_options(MessageType.OFFER))
    return [
        b"",
        b"\x01",
        bytes(239),
        valid[:236] + b"\x00\x00\x00\x00" + valid[240:],  # no magic cookie
        b"\x02" + valid[1:],  # a BOOTREPLY sent to the server
        valid[:2] + b"\x10" + valid[3:],  # hlen 16
        valid[:240] + bytes((Opt.MESSAGE_TYPE, 200, 1)),  # option longer than the message
        valid[:240] + bytes((Opt.MESSAGE_TYPE, 1, 1)),  # options never ended
        no_type,
        offer.encode(),
        os.urandom(1200),
    ]


def _send_raw_from_dut(ifname: str, payloads: list[bytes]) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP)) as sock:
        sock.bind((ifname, ETH_P_IP))
        for payload in payloads:
            sock.send(udp_frame(DUT_MAC, BROADCAST_MAC, ZERO_IP, BROADCAST_IP, CLIENT_PORT, SERVER_PORT, payload))


def test_malformed_messages_do_not_stop_the_server(lab: VethLab, make_server, start_client) -> None:
    server = make_server()
    payloads = _malformed_payloads()
    lab.dut.call(_send_raw_from_dut, lab.dut_if, payloads, timeout=10)
    client = start_client()  # frames are handled in order: the lease proves every bad one was dealt with
    client.wait_event("got_ip", timeout=10)
    assert server.running
    assert server.counters.malformed == len(payloads), server.counters
    assert server.counters.errors == 0
    assert kinds(server)[:4] == ["DISCOVER", "OFFER", "REQUEST/selecting", "ACK"]


def test_decline_retires_the_address_and_inform_gets_configuration_only(
    lab: VethLab, make_server, start_client
) -> None:
    server = make_server()
    other = "02:00:00:00:00:99"
    decline = DhcpMessage(
        op=BOOTREQUEST, xid=7, chaddr=other,
        options=build_options(MessageType.DECLINE, [(Opt.REQUESTED_IP, ip_bytes(lab.addressing.pool_start))]),
    )  # fmt: skip
    inform = DhcpMessage(
        op=BOOTREQUEST, xid=8, chaddr=other, ciaddr="10.77.0.150", options=build_options(MessageType.INFORM)
    )
    lab.dut.call(_send_raw_from_dut, lab.dut_if, [decline.encode(), inform.encode()], timeout=10)
    reply = server.wait_for("ACK", predicate=lambda e: e.xid == 8, timeout=5)
    assert reply.yiaddr == ZERO_IP and reply.lease_s is None and reply.dst_ip == "10.77.0.150"
    assert server.wait_for("DECLINE", timeout=1).requested_ip == lab.addressing.pool_start
    _, got = start_client().wait_event("got_ip", timeout=10)
    assert got["ip"] != lab.addressing.pool_start  # a declined address is never offered again


# --- safety ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def foreign_namespace(lab: VethLab) -> Iterator[Namespace]:
    """A namespace without the project's prefix, holding an interface that looks like the lab's."""
    ns = Namespace(f"nohil-{lab.run_id}")
    run_command(["ip", "netns", "add", ns.name])
    try:
        # A veth pair with both ends inside (this kernel has no dummy interfaces).
        ns.ip("link", "add", "lab0", "type", "veth", "peer", "name", "lab1")
        ns.ip("addr", "add", f"{lab.addressing.host_ip}/{lab.addressing.prefixlen}", "dev", "lab0")
        ns.ip("link", "set", "lab1", "up")
        ns.ip("link", "set", "lab0", "up")
        yield ns
    finally:
        ns.shutdown()
        run_command(["ip", "netns", "delete", ns.name], check=False)


def test_refuses_a_namespace_outside_the_project_unless_forced(lab: VethLab) -> None:
    with foreign_namespace(lab) as ns:
        with pytest.raises(LabError, match=r"refusing .* namespace 'nohil-.*--dhcp-force"):
            DhcpServer(ns, "lab0", lab.addressing).start()
        server = DhcpServer(ns, "lab0", lab.addressing, force=True).start()
        try:
            assert server.running
        finally:
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 1.0, "stop() must end the server within a second"
            assert not server.running


def test_refuses_a_namespace_with_foreign_routes_unless_forced(lab: VethLab) -> None:
    lab.host.ip("link", "add", "other0", "type", "veth", "peer", "name", "other1")
    try:
        lab.host.ip("addr", "add", "192.0.2.1/24", "dev", "other0")
        lab.host.ip("link", "set", "other1", "up")
        lab.host.ip("link", "set", "other0", "up")
        with pytest.raises(LabError, match=r"routes the lab did not create \(192\.0\.2\.0/24 dev other0"):
            DhcpServer(lab.host, lab.host_if, lab.addressing).start()
        lab.host.ip("route", "add", "default", "via", "192.0.2.254")
        with pytest.raises(LabError, match=r"default dev other0 via 192\.0\.2\.254"):
            DhcpServer(lab.host, lab.host_if, lab.addressing).start()
        DhcpServer(lab.host, lab.host_if, lab.addressing, force=True).start().stop()
    finally:
        lab.host.ip("link", "del", "other0")


def test_refuses_a_missing_interface_or_one_without_the_server_address(lab: VethLab) -> None:
    with pytest.raises(LabError, match="interface 'nope0' does not exist"):
        DhcpServer(lab.host, "nope0", lab.addressing, force=True).start()
    with pytest.raises(LabError, match=r"does not carry the server address 10\.77\.0\.1/24"):
        DhcpServer(lab.dut, lab.dut_if, lab.addressing).start()


def test_wait_for_times_out_with_a_clear_message(lab: VethLab, make_server) -> None:
    server = make_server()
    with pytest.raises(DutTimeoutError, match=r"no DHCP DISCOVER on lab0 within 0\.3 s; last exchanges: none"):
        server.wait_for("DISCOVER", timeout=0.3)
    with pytest.raises(ValueError, match="unknown DHCP message type"):
        server.wait_for("HELLO", timeout=0.1)


def test_exchange_records_are_json_ready(lab: VethLab, make_server, start_client) -> None:
    server = make_server()
    start_client().wait_event("got_ip", timeout=10)
    records: list[Exchange] = server.exchanges
    assert json.loads(json.dumps([e.as_dict() for e in records]))[0]["msg_type"] == "DISCOVER"
