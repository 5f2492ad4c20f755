"""`loopback` and the multicast echo with `mcast join|leave` of the firmware's C services.

The loopback self-check runs on the machine's own 127.0.0.1. Multicast runs only inside a lab (the program
in the DUT namespace, the IGMP sniffer and the sender in the host namespace), never on a real interface.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from harness.lab.veth import VethLab
from harness.lab.wire import IgmpSniffer, mcast_echo
from harness.services_program import ServicesProgram, check_clean_exit
from harness.testing import needs_root

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (apt-get install gcc)")

GROUP = "239.1.2.3"
PORT = 5007
DATAGRAM_BYTES = sum(1 + i * 1471 // 15 for i in range(16))  # PROTOCOL.md's 16 datagrams of 1 .. 1472 bytes


def test_loopback_self_check_in_every_mode() -> None:
    with ServicesProgram(["--http", "0"], certs=False) as program:
        replies = {mode: program.command(f"loopback {mode}".strip()) for mode in ("", "recvfrom", "recv", "ephemeral")}
        usage = program.command("loopback now")
        check_clean_exit(program)
    for mode, reply in replies.items():
        assert reply["ok"], reply
        assert (reply["cmd"], reply["mode"], reply["sent"], reply["received"], reply["bytes"]) == (
            "loopback",
            mode or "recvfrom",
            16,
            16,
            DATAGRAM_BYTES,
        )
        assert 0 < reply["duration_us"] < 1_000_000
    assert replies["recv"]["port"] == 32790 and replies["ephemeral"]["port"] != 32790
    assert usage == {"cmd": "loopback", "ok": False, "error": "usage: loopback [recvfrom|recv|ephemeral]"}


@pytest.fixture
def lab() -> Iterator[tuple[VethLab, str]]:
    """A lab whose DUT end has an address and a default route (as its DHCP lease would give it)."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("needs ip and tc to build network namespaces")
    with VethLab() as lab:
        dut_ip = lab.address_dut()
        lab.dut.ip("route", "add", "default", "via", lab.addressing.host_ip)
        yield lab, dut_ip


def _join(lab: VethLab, dut_ip: str, program: ServicesProgram) -> tuple[dict, float | None]:
    sniffer = lab.host.call(IgmpSniffer, lab.host_if, timeout=10)
    try:
        reply = program.command(f"mcast join {GROUP}")
        return reply, sniffer.wait_for(GROUP, dut_ip, 3.0)
    finally:
        sniffer.close()


@needs_root
def test_join_is_an_igmp_report_and_group_datagrams_are_echoed(lab: tuple[VethLab, str]) -> None:
    lab_, dut_ip = lab
    host_ip = lab_.addressing.host_ip
    with ServicesProgram(["--mcast-echo", str(PORT)], certs=False, netns=lab_.dut.name) as program:
        assert program.udp_port("mcast_echo") == PORT
        reply, seen = _join(lab_, dut_ip, program)
        assert reply == {"cmd": "mcast", "ok": True, "action": "join", "group": GROUP, "port": PORT}
        assert seen is not None, "no IGMP membership report on the cable after `mcast join`"
        run = lab_.host.call(mcast_echo, GROUP, PORT, host_ip, dut_ip, 20, 1.0, timeout=40)
        assert not run.problems and run.answered == run.sent == 20
        unicast = lab_.host.call(mcast_echo, dut_ip, PORT, host_ip, dut_ip, 3, 1.0, timeout=10)
        assert unicast.answered == 3, "datagrams to the DUT's own address on the port are echoed too"

        assert program.command(f"mcast leave {GROUP}")["action"] == "leave"
        after = lab_.host.call(mcast_echo, GROUP, PORT, host_ip, dut_ip, 3, 0.5, timeout=10)
        assert after.answered == 0, "datagrams to a group the DUT left are still echoed"
        check_clean_exit(program)


@needs_root
def test_mcast_command_errors(lab: tuple[VethLab, str]) -> None:
    lab_, _ = lab
    with ServicesProgram(["--mcast-echo", "0"], certs=False, netns=lab_.dut.name) as program:
        assert program.command("mcast join 10.0.0.1")["error"] == "not a multicast group: 10.0.0.1"
        assert program.command("mcast join")["error"] == "usage: mcast join|leave <group>"
        assert program.command("mcast part 239.1.1.1")["error"] == "usage: mcast join|leave <group>"
        assert program.command("mcast leave 239.9.9.9")["error"] == "leave failed"
        check_clean_exit(program)


@needs_root
def test_fault_mcast_deaf_answers_ok_and_joins_nothing(lab: tuple[VethLab, str]) -> None:
    lab_, dut_ip = lab
    with ServicesProgram(["--mcast-echo", str(PORT)], certs=False, netns=lab_.dut.name,
                         faults=("mcast_deaf",)) as program:  # fmt: skip
        reply, seen = _join(lab_, dut_ip, program)
        assert reply["ok"] and seen is None
        run = lab_.host.call(mcast_echo, GROUP, PORT, lab_.addressing.host_ip, dut_ip, 3, 0.5, timeout=10)
        assert run.answered == 0
        check_clean_exit(program)
