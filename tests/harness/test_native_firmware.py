"""The virtual board's native firmware (firmware/host): the smoltcp crate, the runtime, the BSD-socket shim and
hil-firmware, built by harness/boards/virtual/stackbuild.py and run on a lab cable against the kernel."""

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
from harness.boards.virtual.firmware_process import FirmwareProcess
from harness.boards.virtual.services_process import SelectEchoPorts
from harness.errors import MissingToolError
from harness.lab.dhcp import DhcpServer
from harness.lab.veth import VethLab
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
SERVICES = {
    "iperf3": 5201,
    "select_echo": SelectEchoPorts(tcp=7000, udp_base=7001, udp_count=4),
    "tcp_echo": 7,
    "udp_echo": 7,
}


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
        ((), "no service chosen"),
        (("--iperf3", "1"), "--mac is required"),
        (("--iperf3", "1", "--mac", "03:00:00:00:00:01"), "unicast MAC"),
        (("--iperf3", "1", "--mac", MAC, "--listen-pool", "0"), "--listen-pool must be a number"),
    ):
        done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)


@pytest.fixture
def lab() -> Iterator[VethLab]:
    """The lab's shaped cable, with TX checksum offload off on the host end (smoltcp verifies every checksum)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with VethLab() as lab:
        lab.host.run("ethtool", "-K", lab.host_if, "tx", "off")
        yield lab


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


@needs_root
@pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3 (apt-get install iperf3)")
def test_the_services_answer_through_smoltcp_and_the_kernel_stays_silent(lab: VethLab) -> None:
    with DhcpServer(lab.host, lab.host_if, lab.addressing), FirmwareProcess(
        mac=MAC, netns=lab.dut.name, options={"heap-bytes": 8 << 20}, **SERVICES
    ) as firmware:  # fmt: skip
        assert firmware.ready["stack"] == "smoltcp" and firmware.ready["mac"] == MAC
        firmware.wait_event("link_up")
        got_ip = firmware.wait_event("got_ip", timeout_s=15)
        assert got_ip["ip"] == lab.addressing.pool_start and got_ip["lease_s"] > 0, got_ip
        assert firmware.wait_event("dhcp")["server"] == lab.addressing.host_ip
        ip = firmware.command("ip")
        assert (ip["ip"], ip["gw"], ip["mac"]) == (got_ip["ip"], lab.addressing.host_ip, MAC)
        assert ip["ipv6_ll"] == "fe80::ff:fe12:3456"  # EUI-64 of the MAC
        dut = ip["ip"]

        # Only smoltcp answers: the kernel has no address and no listening socket on the DUT side.
        addresses = lab.dut.run("ip", "-o", "addr", "show", "dev", lab.dut_if)
        assert " inet" not in addresses, addresses
        assert lab.dut.run("ss", "-Hltnu").strip() == ""
        assert _client(lab, "ping", "-c", "3", "-i", "0.2", "-W", "2", dut).returncode == 0
        ping6 = _client(lab, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", f"{ip['ipv6_ll']}%{lab.host_if}")
        assert ping6.returncode == 0, ping6.stdout + ping6.stderr

        upload = _iperf3(lab)
        download = _iperf3(lab, "-R")
        for report in (upload, download):
            assert report["end"]["sum_received"]["bytes"] > 0
        tcp, udp = lab.host.call(_echo, dut, os.urandom(100_000), timeout=30)
        assert len(tcp) == 100_000 and len(udp) == 1400

        stats = firmware.command("stats")["net"]
        assert stats["rx_frames"] > 0 and stats["tx_frames"] > 0 and stats["link_ups"] == 1
        assert stats["rx_bytes"] >= 3 * 1_000_000, "the upload's bytes went through the stack's counters"
        assert 0 < stats["heap_min_free"] <= stats["heap_free"] < 8 << 20
        sockets = firmware.command("sockets")
        assert sockets["fds"]["used"] >= 7 and sockets["net"]["active_sockets"] >= len(sockets["tcp"]) >= 1
        heap = firmware.command("heap")
        assert heap["total"] == 8 << 20 and heap["free"] <= heap["total"]
    assert firmware.close() is None


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
    firmware = FirmwareProcess(mac=MAC, netns=lab.dut.name, static=f"{DUT_IP}/24", sanitize=True,
                               ready_timeout_s=60, select_echo=SERVICES["select_echo"])  # fmt: skip
    with firmware:
        firmware.wait_event("link_up")
        load = lab.host.call(_select_load, DUT_IP, timeout=180)
        assert load["echoed"] == 16 * 3000
        # The last churn client's FIN may still be on its way: wait for the server to see it.
        assert wait_for(lambda: firmware.command("stats")["select_echo"]["closed"] == 216, timeout_s=10)
        counters = firmware.command("stats")["select_echo"]
        assert counters["accepted"] == 216 and counters["errors"] == 0, counters
        assert firmware.command("sockets")["fds"]["used"] == 5, "a churned connection leaked a descriptor"
    log = firmware.last_log
    assert "Sanitizer" not in log and "runtime error" not in log, log[-4000:]


@needs_root
def test_linux_flavour_serves_the_same_services_on_the_kernel(lab: VethLab) -> None:
    address = lab.address_dut()
    with FirmwareProcess(flavour="linux", netns=lab.dut.name, tcp_echo=7, udp_echo=7) as firmware:
        assert firmware.ready["stack"] == "linux"
        tcp, udp = lab.host.call(_echo, address, b"linux" * 1000, timeout=30)
        assert tcp == b"linux" * 1000 and len(udp) == 1400
        assert firmware.command("stats")["net"]["rx_frames"] > 0
