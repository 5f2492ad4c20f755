"""The fuzz campaign's policy (harness/fuzz.py) against simulated DUTs: no lab, no root, about a second each.

`FakeBench` stands where `FuzzBench` stands: the frames are the real templates' frames, the DUT is a rule over
them (it "crashes" on a frame the rule matches, or after enough frames), so cases, reproduction, reduction,
the files and the seed are checked exactly; the lab tests (test_fuzz_lab.py) prove the same on a cable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_guard import FakeBoard

from harness.errors import BoardError
from harness.fuzz import BoardDut, Campaign, Failure, FuzzError, service_ports
from harness.fuzz_cli import replay_command
from harness.lab import fuzz as frames_lab
from harness.lab.robustness import Context, Target

TARGET = Target("10.77.0.100", "02:00:00:12:34:56", "10.77.0.1", "02:aa:bb:cc:dd:ee")
ARP_FIELDS = frames_lab.template("arp_fields")
ICMP = frames_lab.template("icmp")


def _bad_arp(frame: bytes) -> bool:
    return frame[12:14] == b"\x08\x06" and frame[18] != 6


class FakeDut:
    def checkpoint(self) -> None:
        return None


class FakeBench:
    """A simulated DUT behind the bench interface.

    Args:
        fails: given the frames received since the last reset, what is wrong ("" when nothing).
        flaky: fail only the first time the rule holds (a failure no replay brings back).
    """

    def __init__(self, fails: Callable[[list[bytes]], str], flaky: bool = False, alive_at_start: bool = True) -> None:
        self.dut = FakeDut()
        self.fails = fails
        self.flaky = flaky
        self.alive_at_start = alive_at_start
        self.target: Target | None = None
        self.totals: dict[str, int] = {"rx_frames": 0}
        self.received: list[bytes] = []
        self.log: list[bytes] = []
        self.fired = 0
        self.restarts = 0
        self.restart_error: str = ""

    def connect(self) -> Target:
        if not self.alive_at_start:
            raise FuzzError("the DUT is not alive before fuzzing: no ICMP echo reply")
        self.target = TARGET
        return TARGET

    def send_burst(self, template: frames_lab.Template, seed: int, index: int, count: int) -> list[bytes]:
        offline = frames_lab.Template(template.name, template.layer, template.build)
        frames = frames_lab.build_burst(offline, TARGET, Context(raw=None), seed, index, count)  # type: ignore[arg-type]
        self.send(frames)
        return frames

    def send(self, frames: list[bytes]) -> int:
        self.received += frames
        self.log += frames
        self.totals["rx_frames"] += len(frames)
        return len(frames)

    def check(self, checkpoint: Any) -> Failure | None:
        problem = self.fails(self.received)
        if not problem or (self.flaky and self.fired):
            return None
        self.fired += 1
        return Failure("crash", problem)

    def restart(self) -> Target:
        if self.restart_error:
            raise FuzzError(self.restart_error)
        self.received = []
        self.restarts += 1
        return TARGET


def _campaign(bench: FakeBench, out: Path, templates: tuple[frames_lab.Template, ...], seed: int = 3) -> Campaign:
    return Campaign(bench, out, seed, templates=templates, replay_command=lambda pcap: f"hil fuzz replay {pcap}")  # type: ignore[arg-type]


def test_a_frame_that_crashes_the_dut_becomes_a_reduced_case_with_its_files(tmp_path: Path) -> None:
    bench = FakeBench(lambda got: "DUT crashed: panic at console line 12" if any(map(_bad_arp, got)) else "")
    report = _campaign(bench, tmp_path, (ARP_FIELDS,)).run(60, max_bursts=4)

    assert report.bursts == 4 and report.frames == 4 * frames_lab.BURST_FRAMES
    assert report.cases_found == 4 and len(report.cases) == 4
    first = report.cases[0]
    assert (first.failure.kind, first.burst, first.template, first.reproduced) == ("crash", 1, "arp_fields", "burst")
    burst = frames_lab.read_pcap(first.pcap)
    assert len(burst) == frames_lab.BURST_FRAMES and any(map(_bad_arp, burst))
    assert first.reduced_frames == 1 and first.reduced_pcap is not None
    (reduced,) = frames_lab.read_pcap(first.reduced_pcap)
    assert _bad_arp(reduced) and reduced == next(frame for frame in burst if _bad_arp(frame))
    assert first.reproducer == first.reduced_pcap and first.replay == f"hil fuzz replay {first.reduced_pcap}"
    # The same failure again: replayed once more, then only recorded (resets are the campaign's time).
    assert report.cases[1].reproduced == "burst" and report.cases[1].reduced_pcap is None
    assert [case.same_as for case in report.cases[2:]] == [1, 1]
    assert "the same failure as case 1" in report.cases[3].describe()

    case_file = json.loads((tmp_path / "case-001.json").read_text())
    assert case_file["target"]["dut_ip"] == TARGET.dut_ip and case_file["seed"] == 3
    assert case_file["frames"]["case-001.pcap"] == [[1, index] for index in range(frames_lab.BURST_FRAMES)]
    (source,) = case_file["frames"]["case-001.min.pcap"]
    assert burst[source[1]] == reduced
    assert json.loads((tmp_path / "campaign.json").read_text())["cases_found"] == 4
    message = report.failure_message()
    assert "4 case(s)" in message and f"replay: hil fuzz replay {first.reduced_pcap}" in message
    assert "crash after burst 1 (arp_fields): DUT crashed: panic" in message


def test_a_failure_that_needs_earlier_bursts_is_replayed_with_them(tmp_path: Path) -> None:
    bench = FakeBench(lambda got: "no ICMP echo reply" if len(got) >= 3 * frames_lab.BURST_FRAMES else "")
    report = _campaign(bench, tmp_path, (ICMP,)).run(60, max_bursts=3)
    (case,) = report.cases
    assert (case.burst, case.reproduced, case.reduced_pcap) == (3, "history", None)
    assert case.history_pcap is not None and len(frames_lab.read_pcap(case.history_pcap)) == 3 * 32
    assert case.reproducer == case.history_pcap


def test_a_failure_no_replay_brings_back_is_still_a_case(tmp_path: Path) -> None:
    bench = FakeBench(lambda got: "no ICMP echo reply" if got else "", flaky=True)
    report = _campaign(bench, tmp_path, (ICMP,)).run(60, max_bursts=2)
    (case,) = report.cases
    assert case.reproduced == "no" and case.reproducer == case.pcap
    assert "it did not reproduce on replay after a reset" in report.failure_message()


def test_a_well_behaved_dut_passes_and_the_seed_decides_every_frame(tmp_path: Path) -> None:
    runs = []
    for seed in (5, 5, 6):
        bench = FakeBench(lambda got: "")
        report = _campaign(bench, tmp_path / str(len(runs)), frames_lab.TEMPLATES[:6], seed).run(60, max_bursts=8)
        assert report.failure_message() == "" and report.cases_found == 0 and report.bursts == 8
        runs.append(bench.log)
    assert runs[0] == runs[1] != runs[2]
    assert report.counters["rx_frames"] == 8 * 32


def test_a_dut_dead_from_the_start_or_not_coming_back_stops_the_campaign_with_what_it_found(tmp_path: Path) -> None:
    report = _campaign(FakeBench(lambda got: "", alive_at_start=False), tmp_path / "a", (ICMP,)).run(60)
    assert report.bursts == 0 and "not alive before fuzzing" in report.failure_message()
    bench = FakeBench(lambda got: "DUT crashed: abort" if got else "")
    bench.restart_error = "the DUT did not come back after a reset: no HIL_HELLO"
    report = _campaign(bench, tmp_path / "b", (ICMP,)).run(60, max_bursts=5)
    assert report.cases_found == 1 and report.bursts == 1
    assert "stopped early: the DUT did not come back" in report.failure_message()
    assert (tmp_path / "b" / "case-001.pcap").is_file()


def test_a_burst_the_dut_refuses_to_start_is_a_wedge(tmp_path: Path) -> None:
    class Refusing(FakeBench):
        def send_burst(self, template: frames_lab.Template, seed: int, index: int, count: int) -> list[bytes]:
            raise frames_lab.PrepareError("the tcp_established burst could not start: [Errno 111] Connection refused")

    report = _campaign(Refusing(lambda got: ""), tmp_path, (ICMP,)).run(60, max_bursts=1)
    (case,) = report.cases
    assert case.failure.kind == "wedge" and "Connection refused" in case.failure.detail
    assert frames_lab.read_pcap(case.pcap) == [] and case.reproduced == "no"


class ConsoleBoard(FakeBoard):
    """test_guard's fake board with the address and the services a campaign asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.hello = {"mac": "02:00:00:12:34:56", "services": {"http": 80, "tcp_echo": 7, "udp_echo": 7}}

    def wait_for_ip(self) -> str:
        return "10.77.0.100"

    def ip_info(self) -> dict[str, Any]:
        return {"ip": "10.77.0.100", "mac": "02:00:00:12:34:56", "ipv6_ll": "fe80::ff:fe12:3456"}


def test_a_board_is_a_dut_through_its_console() -> None:
    board = ConsoleBoard()
    dut = BoardDut(board)  # type: ignore[arg-type]
    checkpoint = dut.checkpoint()
    assert dut.counters() is not None and dut.crashes_since(checkpoint) == ""
    board.crash("panic")
    assert "DUT crashed: CPU exception (panic)" in dut.crashes_since(checkpoint)
    checkpoint = dut.checkpoint()
    dut.restart()  # a reset the campaign asked for is no finding
    assert dut.crashes_since(checkpoint) == "" and board.resets == 1
    board.boot(0x7, "HP_SYS_HP_WDT_RESET")
    assert "reset unexpectedly" in dut.crashes_since(checkpoint)
    board.hung = True
    assert dut.counters() is None
    addresses = dut.addresses()
    assert (addresses.ip, addresses.ipv6_ll, addresses.tcp_ports, addresses.udp_ports) == (
        "10.77.0.100", "fe80::ff:fe12:3456", (80, 7), (7,))  # fmt: skip


def test_service_ports_follow_hil_hello_or_the_protocol() -> None:
    assert service_ports({}) == ((80, 443, 7, 7000, 5201), (7, 5007, 7001, 7002, 7003, 7004))
    services = {"http": 8080, "select_echo_tcp": 7100, "select_echo_udp": 7101, "select_echo_udp_count": 2}
    assert service_ports(services) == ((8080, 7100), (7101, 7102))


def test_the_replay_command_carries_the_runs_board_options() -> None:
    options = Namespace(board="virtual", fault=["udp_never_readable", "tls_wrong_cert"], hil_config=None,
                        dhcp_force=False, dl_bytes=1, fuzz_minutes=3.0)  # fmt: skip
    command = replay_command(options, False, Path("results/r 1/fuzz/case-001.min.pcap"))
    assert command == ("hil fuzz replay 'results/r 1/fuzz/case-001.min.pcap' --fault udp_never_readable "
                       "--fault tls_wrong_cert")  # fmt: skip
    real = Namespace(board="esp32p4", port="/dev/ttyACM0", eth_iface="enx1", hil_config=Path("lab.toml"))
    assert replay_command(real, False, Path("c.pcap")).startswith(
        "hil fuzz replay c.pcap --board esp32p4 --hil-config lab.toml"
    ) and "--port /dev/ttyACM0" in replay_command(real, False, Path("c.pcap"))


def test_board_errors_are_not_crashes() -> None:
    board = ConsoleBoard()

    def broken() -> dict[str, Any]:
        raise BoardError("console closed")

    board.stats = broken  # type: ignore[method-assign]
    assert BoardDut(board).counters() is None  # type: ignore[arg-type]


@pytest.mark.parametrize("detail", ["DUT crashed: panic at console line 12", "DUT crashed: panic at console line 99"])
def test_failures_differing_only_in_console_line_are_the_same_failure(detail: str) -> None:
    assert Failure("crash", detail).signature() == ("crash", "DUT crashed: panic at console line N")


OPT_IN_MODULE = """
import pytest

fuzz = "a module global named like the marker"


@pytest.mark.fuzz
def test_campaign():
    pass


def test_plain():
    pass
"""


def test_the_campaign_is_opt_in_by_its_marker_alone(tmp_path: Path) -> None:
    (tmp_path / "test_optin.py").write_text(OPT_IN_MODULE)
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test_optin.py"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert "1 passed, 1 skipped" in done.stdout and "opt-in: run with --fuzz-minutes" in done.stdout, done.stdout
