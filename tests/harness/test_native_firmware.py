"""The virtual board's native firmware (firmware/host): the smoltcp crate, the runtime, the BSD-socket shim and
hil-firmware (both flavours), built by harness/boards/virtual/stackbuild.py and run on a lab cable against the
kernel, driven through the services program's stdin/stdout protocol (harness/services_program.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.boards.virtual import stackbuild
from harness.boards.virtual.faults import CATALOGUE, FAULTS
from harness.errors import MissingToolError
from harness.lab.dhcp import DhcpServer
from harness.lab.netns import Namespace, delete_namespace, run_command
from harness.lab.traffic import TcpOptions, negotiated_tcp_options
from harness.lab.veth import VethLab
from harness.lab.wire import l2_echo
from harness.services_program import ServicesProgram, check_clean_exit
from harness.testing import needs_root, wait_for

try:
    stackbuild.find_cargo()
except MissingToolError as exc:  # a machine without Rust: ci/install.sh sets it up
    pytest.skip(str(exc), allow_module_level=True)

MAC = "02:00:00:12:34:56"
DUT_IP = "10.77.0.100"
GLUE_FEATURES = {
    "alloc", "medium-ethernet", "proto-ipv4", "proto-dhcpv4", "proto-ipv4-fragmentation", "proto-ipv6",
    "proto-ipv6-fragmentation", "proto-ipv6-hbh", "proto-dns", "multicast", "socket-tcp", "socket-udp",
    "socket-dhcpv4", "socket-icmp", "socket-raw", "socket-dns", "socket-mdns",
}  # fmt: skip
SERVICES = ["--iperf3", "5201", "--select-echo", "7000", "7001", "4", "--tcp-echo", "7", "--udp-echo", "7"]
ALL_SERVICES = [*SERVICES, "--http", "80", "--https", "443", "--mcast-echo", "5007", "--l2-echo", "0x88b5"]


def firmware(flavour: str, args: list[str], netns: str, *, sanitize: bool = False, **kwargs: object) -> ServicesProgram:
    """hil-firmware of one flavour with these options, as the services program driver runs it."""
    binary = stackbuild.build_firmware(flavour, sanitize=sanitize)
    return ServicesProgram(args, binary=binary, netns=netns, mac=MAC, **kwargs)  # type: ignore[arg-type]


def cargo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(stackbuild.cargo_command(*args), capture_output=True, text=True, timeout=900,
                          env=stackbuild.cargo_env(), check=False)  # fmt: skip


def test_cargo_tests_pass_and_clippy_is_clean() -> None:
    tests = cargo("test", "--locked")
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert "test result: ok" in tests.stdout
    lint = cargo("clippy", "--locked", "--all-targets", "--", "-D", "warnings")
    assert lint.returncode == 0, lint.stderr[-3000:]


def test_the_crate_enables_exactly_the_glue_features_and_reports_smoltcp_0_12() -> None:
    manifest = stackbuild.tomllib.loads((stackbuild.CRATE_DIR / "Cargo.toml").read_text())
    smoltcp = manifest["dependencies"]["smoltcp"]
    assert smoltcp["default-features"] is False
    assert set(smoltcp["features"]) == GLUE_FEATURES
    assert stackbuild.smoltcp_version().startswith("0.12.")
    assert manifest["profile"]["release"] == {"opt-level": "s", "lto": True, "codegen-units": 1, "panic": "abort"}


def test_missing_or_old_cargo_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(MissingToolError, match=r"no cargo found.*run `ci/install.sh`"):
        stackbuild.find_cargo()
    monkeypatch.undo()
    monkeypatch.setattr(stackbuild, "msrv", lambda: "99.0")
    with pytest.raises(MissingToolError, match=r"older than the crate's Rust 99.0.*rustup"):
        stackbuild.find_cargo()


def test_firmware_builds_are_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = stackbuild.build_firmware("linux")
    assert stackbuild.build_firmware("linux") == first
    monkeypatch.setattr(stackbuild, "CFLAGS", (*stackbuild.CFLAGS, "-DHIL_TEST_VARIANT=1"))
    assert stackbuild.build_firmware("linux") != first
    with pytest.raises(Exception, match="unknown firmware flavour"):
        stackbuild.build_firmware("lwip")


def test_firmware_rejects_bad_arguments() -> None:
    binary = stackbuild.build_firmware("smoltcp")
    for args, message in (
        (("--iperf3", "1"), "--mac is required"),
        (("--iperf3", "1", "--mac", "03:00:00:00:00:01"), "unicast MAC"),
        (("--iperf3", "1", "--mac", MAC, "--listen-pool", "0"), "--listen-pool must be a number"),
        (("--iperf3", "1", "--mac", MAC, "--thread-priority", "100"), "--thread-priority must be a number in 0..99"),
        (("--mac", MAC), "no service chosen"),
        (("--mac", MAC, "--frob", "1"), "unknown option '--frob'"),
    ):
        done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)


@pytest.fixture
def lab() -> Iterator[VethLab]:
    """The lab's shaped cable (TX checksum offload off on both ends: smoltcp verifies every checksum)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with VethLab() as lab:
        yield lab


@needs_root
@pytest.mark.parametrize("flavour", stackbuild.FLAVOURS)
def test_the_firmware_takes_over_only_a_veth_in_a_lab_namespace(lab: VethLab, flavour: str) -> None:
    """Never an interface of the machine: outside a /run/netns/hil-* namespace, or on anything but a veth, the
    firmware refuses before it changes anything."""
    binary = str(stackbuild.build_firmware(flavour))
    argv = [binary, "--ifname", "i0", "--mac", MAC, "--udp-echo", "0"]
    other = Namespace(f"guard-{os.getpid()}")
    run_command(["ip", "netns", "add", other.name])
    try:
        other.ip("link", "add", "i0", "type", "veth", "peer", "name", "i1")
        outside = subprocess.run(other.argv(*argv), capture_output=True, text=True, timeout=30, check=False)
        lab.dut.ip("link", "add", "i0", "type", "ifb")
        not_veth = subprocess.run(lab.dut.argv(*argv), capture_output=True, text=True, timeout=30, check=False)
        mac_after = other.run("cat", "/sys/class/net/i0/address").strip()
    finally:
        delete_namespace(other.name)
    assert outside.returncode == 1 and "not one of the lab's network namespaces" in outside.stderr, outside.stderr
    assert not_veth.returncode == 1 and "driven by ifb, not a lab cable's veth end" in not_veth.stderr, not_veth.stderr
    assert mac_after != MAC, "the refused interface kept its own MAC"


def _shim_tests(lab: VethLab, sanitize: bool, faults: str = "") -> subprocess.CompletedProcess[str]:
    binary = stackbuild.build_shim_tests(sanitize=sanitize)
    command = [str(binary), "--ifname", lab.dut_if, "--mac", MAC, "--ip", DUT_IP, "--peer-netns", lab.host.name,
               "--peer-ip", lab.addressing.host_ip]  # fmt: skip
    return subprocess.run(lab.dut.argv(*command), capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "HIL_FAULTS": faults})  # fmt: skip


@needs_root
@pytest.mark.parametrize("sanitize", [False, True], ids=["release", "asan"])
def test_shim_semantics_against_the_kernel(lab: VethLab, sanitize: bool) -> None:
    done = _shim_tests(lab, sanitize)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "11 passed, 0 failed" in done.stdout
    assert "Sanitizer" not in done.stderr and "runtime error" not in done.stderr, done.stderr[-4000:]


# The shim's faults (the published esp_smoltcp_lwip_compat's defects) and the C cases each must fail.
SHIM_FAULT_CASES = {
    "shim_udp_select_consumes": {"udp_readability_never_consumes", "select_and_poll_over_mixed_tcp_udp_and_kernel_fds"},
    "shim_fin_not_readable": {"fin_makes_readable_and_recv_returns_zero"},
    "shim_close_without_fin": {"close_sends_fin", "shutdown_wr_sends_fin_and_keeps_receiving"},
    "shim_loopback_recv_ignored": {"loopback_datagrams_read_with_recvfrom_recv_and_read"},
    "shim_loopback_port0_refused": {"loopback_bind_to_port_zero_picks_a_port"},
}


def test_the_shim_fault_cases_cover_the_catalogues_shim_faults() -> None:
    assert set(SHIM_FAULT_CASES) == {fault.name for fault in CATALOGUE if fault.name.startswith("shim_")}
    assert all(FAULTS[name].stack == "smoltcp" for name in SHIM_FAULT_CASES)


@needs_root
@pytest.mark.parametrize("fault", sorted(SHIM_FAULT_CASES))
def test_each_shim_fault_fails_exactly_the_cases_of_its_defect(lab: VethLab, fault: str) -> None:
    done = _shim_tests(lab, sanitize=False, faults=fault)
    failed = {line.removeprefix("not ok - ").split(":", 1)[0] for line in done.stdout.splitlines()
              if line.startswith("not ok - ")}  # fmt: skip
    assert failed == SHIM_FAULT_CASES[fault], done.stdout
    assert f"fault {fault} on" in done.stderr, done.stderr[-2000:]


def _client(lab: VethLab, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lab.host.argv(*command), capture_output=True, text=True, timeout=timeout, check=False)


def _iperf3(lab: VethLab, *extra: str) -> dict:
    done = _client(lab, "iperf3", "-c", DUT_IP, "-t", "3", "--json", *extra)
    report = json.loads(done.stdout)
    assert "error" not in report, report.get("error")
    return report


def _echo(host: str, payload: bytes) -> tuple[bytes, bytes]:
    with socket.create_connection((host, 7), timeout=5) as tcp:
        tcp.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += tcp.recv(65536)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(payload[:1400], (host, 7))
        datagram, _ = udp.recvfrom(2048)
    return got, datagram


def _http_stats(host: str) -> dict:
    with socket.create_connection((host, 80), timeout=5) as conn:
        conn.sendall(b"GET /stats HTTP/1.1\r\nHost: hil-dut\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


@needs_root
@pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3 (apt-get install iperf3)")
def test_the_services_answer_through_smoltcp_and_the_kernel_stays_silent(lab: VethLab) -> None:
    with DhcpServer(lab.host, lab.host_if, lab.addressing), firmware(
        "smoltcp", [*ALL_SERVICES, "--heap-bytes", str(8 << 20), "--listen-pool", "1"], lab.dut.name
    ) as program:  # fmt: skip
        assert program.ready["stack"] == "smoltcp" and program.ready["unknown_faults"] == []
        program.wait_event("link_up")
        got_ip = program.wait_event("got_ip", timeout=15)
        assert got_ip["ip"] == lab.addressing.pool_start and got_ip["lease_s"] > 0, got_ip
        assert program.wait_event("dhcp")["server"] == lab.addressing.host_ip
        ip = program.command("ip")
        assert ip["cmd"] == "ip" and ip["ok"], ip
        assert (ip["ip"], ip["gw"], ip["mac"]) == (got_ip["ip"], lab.addressing.host_ip, MAC)
        assert ip["ipv6_ll"] == "fe80::ff:fe12:3456"  # EUI-64 of the MAC
        dut = ip["ip"]

        # Only smoltcp answers: the kernel has no address and no socket on the DUT side.
        addresses = lab.dut.run("ip", "-o", "addr", "show", "dev", lab.dut_if)
        assert " inet" not in addresses, addresses
        assert lab.dut.run("ss", "-Hltnu").strip() == ""
        # What smoltcp negotiates (the throughput scenarios' ceiling): no timestamps, MSS from the 1486-byte IP MTU.
        assert lab.host.call(negotiated_tcp_options, dut, 80, timeout=30) == TcpOptions(mss=1446, timestamps=False)
        assert _client(lab, "ping", "-c", "3", "-i", "0.2", "-W", "2", dut).returncode == 0
        ping6 = _client(lab, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", f"{ip['ipv6_ll']}%{lab.host_if}")
        assert ping6.returncode == 0, ping6.stdout + ping6.stderr

        upload = _iperf3(lab)
        download = _iperf3(lab, "-R")
        for report in (upload, download):
            assert report["end"]["sum_received"]["bytes"] > 0
        tcp, udp = lab.host.call(_echo, dut, os.urandom(100_000), timeout=30)
        assert len(tcp) == 100_000 and len(udp) == 1400
        assert lab.host.call(_http_stats, dut, timeout=30)["trigger"] == "http"
        echoes = lab.host.call(l2_echo, lab.host_if, MAC, 0x88B5, 5, 64, 2.0, timeout=30)
        assert echoes.answered == 5 and echoes.rx_hw_ns == [0] * 5, echoes
        loopback = program.command("loopback recv")
        assert loopback["ok"] and loopback["received"] == 16, loopback
        assert program.command("mcast join 239.1.2.3")["ok"]

        stats = program.stats()["net"]
        assert stats["rx_frames"] > 0 and stats["tx_frames"] > 0 and stats["link_ups"] == 1
        assert stats["rx_bytes"] >= 3 * 1_000_000, "the upload's bytes went through the stack's counters"
        assert 0 < stats["heap_min_free"] <= stats["heap_free"] < 8 << 20
        tap = program.command("l2tap off 0x88b5")
        assert (tap["rx"], tap["echoed"], tap["dropped"]) == (5, 5, 0), tap
        sockets = program.command("sockets")
        assert sockets["cmd"] == "sockets" and sockets["fds_max"] == 32 and sockets["fd_base"] == 32
        assert sockets["fds_used"] >= 10 and sockets["sockets_max"] == 32
        assert sockets["active_sockets"] >= len(sockets["tcp"]) >= 5, "one armed socket per listener"
        heap = program.command("heap")
        assert heap["caps"]["default"]["total"] == 8 << 20 and heap["free"] <= 8 << 20
    assert program.close() is None


def _select_load(host: str) -> dict:
    """16 concurrent echo clients, UDP on every select-echo port, then 200 connect/close cycles."""
    clients = [socket.create_connection((host, 7000), timeout=5) for _ in range(16)]
    for index, client in enumerate(clients):
        client.sendall(bytes([index]) * 3000)
    echoed = 0
    for client in clients:
        got = b""
        while len(got) < 3000:
            got += client.recv(4096)
        echoed += len(got)
        client.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        for port in range(7001, 7005):
            udp.sendto(b"x" * 512, (host, port))
            udp.recvfrom(1024)
    for _ in range(200):
        with socket.create_connection((host, 7000), timeout=5) as churn:
            churn.sendall(b"c")
            churn.recv(1)
    return {"echoed": echoed}


@needs_root
def test_asan_build_serves_select_and_churn_without_reports(lab: VethLab) -> None:
    args = ["--static", f"{DUT_IP}/24", "--select-echo", "7000", "7001", "4", "--listen-pool", "1"]
    with firmware("smoltcp", args, lab.dut.name, sanitize=True, certs=False, ready_timeout_s=60) as program:
        program.wait_event("link_up")
        load = lab.host.call(_select_load, DUT_IP, timeout=180)
        assert load["echoed"] == 16 * 3000
        # The last churn client's FIN may still be on its way: wait for the server to see it.
        assert wait_for(lambda: program.stats()["select_echo"]["closed"] == 216, timeout_s=10)
        counters = program.stats()["select_echo"]
        assert counters["accepted"] == 216 and counters["errors"] == 0, counters
        assert program.command("sockets")["fds_used"] == 5, "a churned connection leaked a descriptor"
        check_clean_exit(program)


def test_the_services_faults_and_the_runtime_faults_are_known_to_the_firmware(lab: VethLab) -> None:
    from harness.boards.virtual.faults import CATALOGUE

    with firmware("smoltcp", ["--static", f"{DUT_IP}/24", *SERVICES], lab.dut.name, certs=False,
                  faults=(*(fault.name for fault in CATALOGUE), "not_a_fault")) as program:  # fmt: skip
        assert program.ready["unknown_faults"] == ["not_a_fault"]
        assert program.command("ip")["ipv6_ll"] == "", "ipv6_ll_missing: no link-local address"


@needs_root
def test_linux_flavour_serves_the_same_services_on_the_kernel_with_udhcpc(lab: VethLab) -> None:
    with DhcpServer(lab.host, lab.host_if, lab.addressing), firmware(
        "linux", [*ALL_SERVICES], lab.dut.name
    ) as program:  # fmt: skip
        assert program.ready["stack"] == "linux"
        got_ip = program.wait_event("got_ip", timeout=15)
        assert got_ip["ip"] == lab.addressing.pool_start and got_ip["lease_s"] == 3600, got_ip
        assert program.wait_event("dhcp")["server"] == lab.addressing.host_ip
        ip = program.command("ip")
        assert (ip["ip"], ip["gw"], ip["mac"]) == (got_ip["ip"], lab.addressing.host_ip, MAC)
        assert ip["ipv6_ll"] == "fe80::ff:fe12:3456"
        tcp, udp = lab.host.call(_echo, got_ip["ip"], b"linux" * 1000, timeout=30)
        assert tcp == b"linux" * 1000 and len(udp) == 1400
        echoes = lab.host.call(l2_echo, lab.host_if, MAC, 0x88B5, 3, 64, 2.0, timeout=30)
        assert echoes.answered == 3, echoes
        assert program.command("loopback")["ok"]
        assert program.stats()["net"]["rx_frames"] > 0
