"""The lab: namespaces, the shaped cable, teardown and the sweep of dead runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.errors import LabError
from harness.lab.netns import Lab, LinkProfile, run_command, sweep_stale_namespaces
from harness.testing import hil_namespaces, needs_root


def test_goodput_ceiling_matches_100base_tx_arithmetic() -> None:
    link = LinkProfile()
    # 1460 B of payload per 1538 B on the wire (8 preamble + 14 header + 1500 + 4 FCS + 12 gap).
    assert link.frame_wire_bytes(1500) == 1538
    assert link.tcp_goodput_ceiling_mbps(timestamps=False) == pytest.approx(94.928, abs=0.001)
    assert link.tcp_goodput_ceiling_mbps(timestamps=True) == pytest.approx(94.148, abs=0.001)


@needs_root
def test_lab_builds_shaped_cable_and_removes_everything() -> None:
    with Lab() as lab:
        names = {lab.host.name, lab.dut.name}
        assert names <= hil_namespaces()
        qdisc = lab.host.run("tc", "qdisc", "show", "dev", lab.host_if)
        assert "tbf" in qdisc and "rate 100Mbit" in qdisc and "overhead 24" in qdisc
        details = lab.dut.run("ip", "-d", "link", "show", lab.dut_if)
        assert "gso_max_segs 1" in details and "mtu 1500" in details
        sleeper = lab.spawn("sleeper", lab.host, ["sleep", "300"])
    assert not names & hil_namespaces()
    assert sleeper.popen.poll() is not None


@needs_root
def test_link_down_drops_carrier_on_the_dut_side() -> None:
    with Lab() as lab:
        lab.dut.ip("link", "set", lab.dut_if, "up")
        carrier = f"/sys/class/net/{lab.dut_if}/carrier"
        lab.set_link(False)
        assert lab.dut.run("cat", carrier, check=False).strip() in ("0", "")
        lab.set_link(True)
        assert lab.dut.run("cat", carrier).strip() == "1"


@needs_root
def test_sweep_removes_namespaces_of_a_dead_run_only() -> None:
    # A run that died without cleaning up: its namespace exists, its lock is no longer held.
    dead_child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"hil-dead{dead_child.stdout.strip()}-host"
    try:
        with Lab() as alive:
            run_command(["ip", "netns", "add", dead])
            removed = sweep_stale_namespaces()
            assert dead in removed
            assert alive.host.name in hil_namespaces(), "a live run's namespace was swept"
    finally:
        run_command(["ip", "netns", "delete", dead], check=False)


def test_lab_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        Lab().start()


def test_clients_refuse_lab_addresses_outside_the_lab_namespaces() -> None:
    from harness.lab.netns import require_lab_namespace

    # From the machine's own namespace a lab address could be a real host: nothing may be sent.
    with pytest.raises(LabError, match="outside the lab's network namespaces"):
        require_lab_namespace("10.77.0.100")
    require_lab_namespace("127.0.0.1")


@needs_root
def test_clients_may_reach_lab_addresses_from_the_host_namespace() -> None:
    from harness.lab.netns import require_lab_namespace

    with Lab() as lab:
        lab.host.call(require_lab_namespace, "10.77.0.100", timeout=10)


@needs_root
def test_address_dut_gives_a_reachable_static_address() -> None:
    with Lab() as lab:
        address = lab.address_dut()
        assert address == lab.addressing.pool_start
        assert f"inet {address}/{lab.addressing.prefixlen}" in lab.dut.ip("addr", "show", lab.dut_if)
        assert " 0% packet loss" in lab.host.run("ping", "-c", "2", "-i", "0.2", "-W", "2", address)
