"""The lab: namespaces, the shaped cable, teardown and the sweep of dead runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import LabError
from harness.lab.base import LinkProfile, RunOwnership, dead_run_namespaces, sweep_dead_runs
from harness.lab.netns import LOCK_DIR, run_command
from harness.lab.veth import VethLab
from harness.testing import hil_namespaces, needs_root


def test_goodput_ceiling_matches_100base_tx_arithmetic() -> None:
    link = LinkProfile()
    # 1460 B of payload per 1538 B on the wire (8 preamble + 14 header + 1500 + 4 FCS + 12 gap).
    assert link.frame_wire_bytes(1500) == 1538
    assert link.tcp_goodput_ceiling_mbps(timestamps=False) == pytest.approx(94.928, abs=0.001)
    assert link.tcp_goodput_ceiling_mbps(timestamps=True) == pytest.approx(94.148, abs=0.001)
    # smoltcp 0.12 behind the glue's 1500-byte frame MTU: MSS 1446, no timestamps, 1524 bytes on the wire.
    assert link.tcp_goodput_ceiling_mbps(timestamps=False, mss=1446) == pytest.approx(94.882, abs=0.001)


@needs_root
def test_lab_builds_shaped_cable_and_removes_everything() -> None:
    with VethLab() as lab:
        names = {lab.host.name, lab.dut.name}
        assert names <= hil_namespaces()
        qdisc = lab.host.run("tc", "qdisc", "show", "dev", lab.host_if)
        assert "tbf" in qdisc and "rate 100Mbit" in qdisc and "overhead 24" in qdisc
        details = lab.dut.run("ip", "-d", "link", "show", lab.dut_if)
        assert "gso_max_segs 1" in details and "mtu 1500" in details
        sleeper = lab.spawn("sleeper", ["sleep", "300"])
    assert not names & hil_namespaces()
    assert sleeper.popen.poll() is not None


@needs_root
def test_link_down_drops_carrier_on_the_dut_side() -> None:
    with VethLab() as lab:
        lab.dut.ip("link", "set", lab.dut_if, "up")
        carrier = f"/sys/class/net/{lab.dut_if}/carrier"
        lab.set_link(False)
        assert lab.dut.run("cat", carrier, check=False).strip() in ("0", "")
        lab.set_link(True)
        assert lab.dut.run("cat", carrier).strip() == "1"


def _owner_file_of_a_dead_process(run_id: str, namespaces: list[str]) -> None:
    """An owner file as a run writes it, for a process that has exited since (its lock is free)."""
    code = (
        "import sys; from harness.lab.base import RunOwnership; "
        f"RunOwnership({run_id!r}, {namespaces!r}).acquire(); sys.exit(0)"
    )
    # The child exits without releasing: exactly what a SIGKILLed run leaves behind.
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


@needs_root
def test_sweep_removes_namespaces_of_a_dead_run_only() -> None:
    dead_id = f"dead{os.getpid() % 10000:04d}"
    dead = f"hil-{dead_id}-host"
    nameless = f"hil-noowner{os.getpid() % 10000:04d}-host"  # a `hil-` name without an owner file proves nothing
    try:
        with VethLab() as alive:
            run_command(["ip", "netns", "add", dead])
            run_command(["ip", "netns", "add", nameless])
            _owner_file_of_a_dead_process(dead_id, [dead])
            assert dead_run_namespaces(LOCK_DIR / f"{dead_id}.lock") == [dead]
            assert dead_run_namespaces(LOCK_DIR / f"{alive.run_id}.lock") is None, "a live run looks dead"
            removed = sweep_dead_runs()
            assert dead in removed and dead not in hil_namespaces()
            assert not (LOCK_DIR / f"{dead_id}.lock").exists()
            assert alive.host.name in hil_namespaces(), "a live run's namespace was swept"
            assert nameless in hil_namespaces(), "a namespace was swept on its name alone"
    finally:
        for name in (dead, nameless):
            run_command(["ip", "netns", "delete", name], check=False)
        (LOCK_DIR / f"{dead_id}.lock").unlink(missing_ok=True)


@needs_root
def test_owner_file_of_a_live_process_proves_nothing_even_without_its_lock(tmp_path: Path) -> None:
    # This process is alive: an owner file naming it (lock free or not) must never mark its run dead.
    ownership = RunOwnership(f"live{os.getpid() % 10000:04d}", ["hil-x-host"]).acquire()
    try:
        assert dead_run_namespaces(ownership.path) is None
    finally:
        ownership.release()
    assert not ownership.path.exists()


def test_lab_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        VethLab().start()


def test_clients_refuse_lab_addresses_outside_the_lab_namespaces() -> None:
    from harness.lab.netns import require_lab_namespace

    # From the machine's own namespace a lab address could be a real host: nothing may be sent.
    with pytest.raises(LabError, match="outside the lab's network namespaces"):
        require_lab_namespace("10.77.0.100")
    require_lab_namespace("127.0.0.1")


@needs_root
def test_clients_may_reach_lab_addresses_from_the_host_namespace() -> None:
    from harness.lab.netns import require_lab_namespace

    with VethLab() as lab:
        lab.host.call(require_lab_namespace, "10.77.0.100", timeout=10)


@needs_root
def test_address_dut_gives_a_reachable_static_address() -> None:
    with VethLab() as lab:
        address = lab.address_dut()
        assert address == lab.addressing.pool_start
        assert f"inet {address}/{lab.addressing.prefixlen}" in lab.dut.ip("addr", "show", lab.dut_if)
        assert " 0% packet loss" in lab.host.run("ping", "-c", "2", "-i", "0.2", "-W", "2", address)
