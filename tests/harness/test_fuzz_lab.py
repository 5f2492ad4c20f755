"""The fuzz campaign on a lab cable: it finds, records, reduces and replays what breaks a deliberately fragile
target, raises no alarm against a well-behaved one, and runs against the native smoltcp firmware."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_targets import FIRMWARE_MAC, FirmwareDut, FragileResponder

from harness.boards.virtual import stackbuild
from harness.errors import MissingToolError
from harness.fuzz import Campaign, FuzzBench, replay
from harness.lab import fuzz as frames_lab
from harness.lab.dhcp import DhcpServer
from harness.lab.robustness import Context, Target, open_raw_socket, socket_mac
from harness.lab.veth import VethLab
from harness.testing import REPO, needs_root, run_hil

pytestmark = needs_root
# The fragile responder only speaks IPv4 (ARP, ICMP): the IPv4 templates, its two triggers among them.
IPV4_TEMPLATES = tuple(t for t in frames_lab.TEMPLATES if t.layer in ("Ethernet", "ARP", "IPv4", "ICMP", "UDP"))
TRIGGER_TEMPLATES = tuple(frames_lab.template(name) for name in ("icmp", "arp_fields", "udp_header"))


@pytest.fixture
def lab() -> Iterator[VethLab]:
    with VethLab() as lab:
        yield lab


def _bench(dut: object, lab: VethLab) -> FuzzBench:
    return FuzzBench(dut, lab.host, lab.host_if, lab.addressing.host_ip)  # type: ignore[arg-type]


def _is_bad_arp(frame: bytes) -> bool:
    return frame[12:14] == b"\x08\x06" and frame[18] != 6


def _is_long_udp(frame: bytes) -> bool:
    ihl = (frame[14] & 0x0F) * 4
    udp = frame[14 + ihl :]
    return frame[12:14] == b"\x08\x00" and frame[23] == 17 and int.from_bytes(udp[4:6], "big") > len(udp)


def test_a_crash_and_a_wedge_are_found_recorded_reduced_and_replayed(lab: VethLab, tmp_path: Path) -> None:
    responder = FragileResponder(lab, "10.77.0.100").start()
    bench = _bench(responder, lab)
    try:
        report = Campaign(bench, tmp_path, seed=7, templates=TRIGGER_TEMPLATES).run(60, max_bursts=3)
    finally:
        bench.close()
        responder.stop()
    assert not report.fatal, report.fatal
    found = {case.failure.kind: case for case in reversed(report.cases)}  # the first case of each kind
    assert set(found) == {"crash", "wedge"}, report.failure_message()
    crash, wedge = found["crash"], found["wedge"]
    assert "exited with status 70" in crash.failure.detail and crash.template == "arp_fields"
    assert "no ICMP echo reply from 10.77.0.100" in wedge.failure.detail and wedge.template == "udp_header"
    for case, trigger in ((crash, _is_bad_arp), (wedge, _is_long_udp)):
        assert case.reproduced == "burst" and case.reduced_frames == 1, case.describe()
        assert case.reduced_pcap is not None and case.replay.endswith(str(case.reduced_pcap))
        (frame,) = frames_lab.read_pcap(case.reduced_pcap)
        assert trigger(frame) and frame in frames_lab.read_pcap(case.pcap)
        assert str(case.reduced_pcap) in report.failure_message()

    # The replay command's work in a later run: another cable, another DUT address and MAC; the frames are
    # mapped onto them (with their checksums) and the reduced frame still crashes or wedges the target.
    with VethLab() as later:
        assert later.run_id != lab.run_id
        for case in (crash, wedge):
            assert case.reduced_pcap is not None
            target = FragileResponder(later, "10.77.0.150").start()
            bench = _bench(target, later)
            try:
                result = replay(bench, case.reduced_pcap)
            finally:
                bench.close()
                target.stop()
            assert result.retargeted and result.frames == 1
            assert result.failure is not None and result.failure.kind == case.failure.kind, result


def test_a_well_behaved_target_raises_no_alarm(lab: VethLab, tmp_path: Path) -> None:
    responder = FragileResponder(lab, "10.77.0.100", triggers=()).start()
    bench = _bench(responder, lab)
    try:
        report = Campaign(bench, tmp_path, seed=8, templates=IPV4_TEMPLATES).run(
            120, max_bursts=3 * len(IPV4_TEMPLATES)
        )
        counters = responder.counters()
    finally:
        bench.close()
        responder.stop()
    assert report.failure_message() == "" and report.bursts == 3 * len(IPV4_TEMPLATES)
    assert counters is not None and counters["rx_frames"] >= report.frames, "every frame reached the target"


def _cargo_missing() -> str:
    try:
        stackbuild.find_cargo()
    except MissingToolError as exc:  # a machine without Rust: ci/install.sh sets it up
        return str(exc)
    return ""


@pytest.mark.skipif(bool(_cargo_missing()), reason=_cargo_missing())
def test_every_template_reaches_the_native_smoltcp_firmware_and_it_survives(lab: VethLab, tmp_path: Path) -> None:
    lab.host.run("ethtool", "-K", lab.host_if, "tx", "off")  # smoltcp verifies every checksum: the probes' too
    with DhcpServer(lab.host, lab.host_if, lab.addressing):
        firmware = FirmwareDut(lab).start()
        bench = _bench(firmware, lab)
        try:
            report = Campaign(bench, tmp_path, seed=9).run(300, max_bursts=2 * len(frames_lab.TEMPLATES))
        finally:
            bench.close()
            firmware.stop()
    assert set(report.per_template) == {t.name for t in frames_lab.TEMPLATES}, "IPv6 and TCP templates too"
    assert report.bursts == 2 * len(frames_lab.TEMPLATES) and not report.fatal, report.failure_message()
    assert not report.cases, report.failure_message() + firmware.last_log[-3000:]
    received = report.counters["rx_frames"] + report.counters["frame_pool_drops"]
    assert received >= report.frames, f"{received} frames counted by the firmware for {report.frames} sent"


def _reset_syns(host_if: str, dut_ip: str, port: int, rounds: int) -> None:
    """SYNs from the lab host, 4 at a time: its kernel answers each SYN-ACK with a RST (no socket of its own)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    with open_raw_socket(host_if, receive=False) as raw:
        mac = socket_mac(raw)
        for round_ in range(rounds):
            frames = [bytes(Ether(src=mac, dst=FIRMWARE_MAC) / IP(src="10.77.0.1", dst=dut_ip)
                            / TCP(sport=30000 + 4 * round_ + i, dport=port, flags="S", seq=1000 * i))
                      for i in range(4)]  # fmt: skip
            frames_lab.send_frames(raw, frames)
            frames_lab.icmp_echo(dut_ip, round_)  # paced: the firmware has answered what came before


@pytest.mark.xfail(
    stackbuild.smoltcp_version() == "0.12.0",
    strict=True,
    raises=AssertionError,
    reason="smoltcp 0.12.0: a listening socket accepts the RST meant for a pool sibling in SYN-RECEIVED "
    "(smoltcp-rs/smoltcp#851, fixed by #1058 after 0.12.0) and SYN-RECEIVED never times out, so the sibling stays "
    "half-open, retransmitting its SYN-ACK, until a new SYN finds no socket listening and takes its place "
    "(docs/fuzz.md)",
)
@pytest.mark.skipif(bool(_cargo_missing()), reason=_cargo_missing())
def test_a_listener_survives_peers_resetting_its_syn_acks(lab: VethLab) -> None:
    lab.host.run("ethtool", "-K", lab.host_if, "tx", "off")
    with DhcpServer(lab.host, lab.host_if, lab.addressing):
        firmware = FirmwareDut(lab).start()
        try:
            dut_ip = firmware.addresses().ip
            lab.host.call(_reset_syns, lab.host_if, dut_ip, 7000, 60, timeout=120)
            assert firmware.program is not None
            sockets = firmware.program.command("sockets")["tcp"]
        finally:
            firmware.stop()
    half_open = [s["remote"] for s in sockets if s["state"] == "SYN-RECEIVED" and s["local"].endswith(":7000")]
    assert not half_open, f"reset by their peer, still half-open: {half_open}"


def test_hil_run_fuzz_minutes_then_hil_fuzz_replay_on_the_virtual_board(tmp_path: Path) -> None:
    done = run_hil("--fuzz-minutes", "0.1", "--fuzz-seed", "4", "-k", "fuzz", results_dir=tmp_path / "run")
    output = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, output
    assert "fuzz: seed 4, 0.1 min (the same campaign again: --fuzz-seed 4)" in done.stdout, output
    (record,) = [json.loads(path.read_text()) for path in (tmp_path / "run").glob("*.json")]
    tests = {test["nodeid"].split("::")[-1]: test for test in record["tests"]}
    assert "test_fuzz_replay" not in tests and "opt-in: run with --fuzz-replay" in done.stdout, output
    campaign = tests["test_fuzz_campaign"]
    metrics = {metric["name"]: metric["value"] for metric in campaign["metrics"]}
    assert campaign["outcome"] == "passed" and metrics["fuzz_cases"] == 0
    assert metrics["fuzz_frames_sent"] == metrics["fuzz_bursts"] * frames_lab.BURST_FRAMES > 0
    assert metrics["fuzz_rx_frames"] >= metrics["fuzz_frames_sent"]
    report = json.loads((tmp_path / "run" / record["run_id"] / "fuzz" / "campaign.json").read_text())
    assert report["seed"] == 4 and report["bursts"] == metrics["fuzz_bursts"]

    # A case file from another DUT: `hil fuzz replay` maps its frames onto this run's DUT and sends them.
    elsewhere = Target("10.77.0.150", "02:00:00:65:43:21", "10.77.0.1", "02:11:22:33:44:55")
    frames = frames_lab.build_burst(frames_lab.template("icmp"), elsewhere, Context(raw=None), 4, 1, 32)  # type: ignore[arg-type]
    pcap = frames_lab.write_pcap(tmp_path / "case-001.pcap", frames)
    (tmp_path / "case-001.json").write_text(json.dumps({"target": dataclasses.asdict(elsewhere)}))
    command = [sys.executable, "-m", "harness.cli", "fuzz", "replay", str(pcap),
               "--results-dir", str(tmp_path / "replay"), "-p", "no:cacheprovider"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    (record,) = [json.loads(path.read_text()) for path in (tmp_path / "replay").glob("*.json")]
    (test,) = record["tests"]
    assert test["nodeid"].endswith("test_fuzz_replay") and test["outcome"] == "passed"
    assert {metric["name"]: metric["value"] for metric in test["metrics"]} == {"fuzz_replay_frames": 32}
    assert test["counters"]["rx_frames"] >= 32, "the mapped frames reached the DUT"


def test_hil_fuzz_replay_refuses_a_missing_pcap(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "harness.cli", "fuzz", "replay", str(tmp_path / "nope.pcap")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and f"no pcap at {tmp_path / 'nope.pcap'}" in done.stderr


def test_the_probe_tells_which_answer_is_missing(lab: VethLab) -> None:
    address = lab.address_dut()  # the DUT end's kernel answers, as a DUT would
    link_local = lab.dut.run("ip", "-6", "-o", "addr", "show", "dev", lab.dut_if, "scope", "link").split()[3]
    link_local = link_local.split("/")[0]
    assert lab.host.call(frames_lab.probe, address, None, 1, link_local, lab.host_if, timeout=30) == ""
    lab.dut.run("sysctl", "-q", "-w", f"net.ipv6.conf.{lab.dut_if}.disable_ipv6=1")
    problem = lab.host.call(frames_lab.probe, address, None, 1, link_local, lab.host_if, timeout=30)
    assert problem == f"no ICMPv6 echo reply from {link_local}%{lab.host_if} (3 requests, 1 s each)"
    problem = lab.host.call(frames_lab.probe, address, 9, 1, timeout=30)
    assert problem.startswith(f"TCP connect to {address}:9 failed 2 times (") and "refused" in problem
    lab.set_link(False, side="dut")
    problem = lab.host.call(frames_lab.probe, address, 9, 1, timeout=30)
    assert problem == f"no ICMP echo reply from {address} (3 requests, 1 s each)"
