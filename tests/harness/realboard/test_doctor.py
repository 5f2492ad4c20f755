"""`hil doctor` on this machine (no board, no NIC, no ESP-IDF) and with pieces taken away."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serial.tools.list_ports_common import ListPortInfo

from harness.console.decode import DecodingStatus, decoding_status
from harness.doctor import FAIL, OK, WARN, DoctorInputs, check_crash_decoding, exit_code, run_checks
from harness.privileges import CAPABILITIES, check_lab_privileges, effective_capabilities

REPO = Path(__file__).resolve().parents[3]


def _by_what(checks: list) -> dict:
    return {check.what: check for check in checks}


def test_hil_doctor_on_this_machine_explains_each_missing_piece(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "doctor"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO)},
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr  # the virtual board has what it needs here
    warned = [line for line in lines if line.startswith("warn")]
    # No board, no NIC, no ESP-IDF on this machine: each is one line with its fix.
    for what in ("serial port", "board NIC", "ESP-IDF", "idf.py"):
        line = next(line for line in warned if line.split(None, 1)[1].startswith(what))
        assert " -> fix: " in line
    # Crash decoding as the decoder itself finds it on this PATH: one line per path, no second opinion.
    for status in decoding_status():
        line = next(line for line in lines if line.split(None, 1)[1].startswith(status.what))
        assert line.startswith("ok" if status.available else "warn") and status.found in line
    assert any(line.startswith("ok    tool iperf3") for line in lines)
    assert lines[-1].startswith("ready for the virtual board: 0 failure(s)")


def test_missing_lab_tool_fails_with_the_package_to_install() -> None:
    checks = run_checks(
        DoctorInputs(which=lambda name: None if name == "iperf3" else f"/usr/bin/{name}", serial_ports=[])
    )
    iperf = _by_what(checks)["tool iperf3"]
    assert iperf.status == FAIL and "apt-get install iperf3" in iperf.fix
    assert exit_code(checks) == 1


def test_bad_config_file_fails(tmp_path: Path) -> None:
    bad = tmp_path / "hil.toml"
    bad.write_text('[boards.desk]\nport_mac = "nope"\n')
    checks = run_checks(DoctorInputs(config_path=bad, serial_ports=[]))
    config = _by_what(checks)["config file"]
    assert config.status == FAIL and "port_mac" in config.found
    assert exit_code(checks) == 1


def test_configured_board_and_autodetected_port(tmp_path: Path) -> None:
    good = tmp_path / "hil.toml"
    good.write_text('[boards.desk]\nchip_rev = "v1.0"\n[nic]\niface = "nosuchnic0"\n')
    ch343 = ListPortInfo("/dev/ttyACM0", skip_link_detection=True)
    ch343.vid, ch343.pid = 0x1A86, 0x55D3
    checks = _by_what(run_checks(DoctorInputs(config_path=good, serial_ports=[ch343], environ={})))
    assert checks["config file"].status == OK and "desk" in checks["config file"].found
    assert checks["serial port"].status == OK and "/dev/ttyACM0" in checks["serial port"].found
    assert checks["board NIC"].status == WARN and "nosuchnic0 does not exist" in checks["board NIC"].found


def test_capability_mask_is_read_by_bit() -> None:
    only_net_admin = f"CapEff:\t{1 << CAPABILITIES['cap_net_admin'][0]:016x}\n"
    assert effective_capabilities(only_net_admin) == frozenset({"cap_net_admin"})
    report = check_lab_privileges(only_net_admin)
    assert report.missing == ("cap_net_bind_service", "cap_net_raw", "cap_sys_admin")
    assert any("cap_sys_admin" in line and "/run/netns" in line for line in report.problems())
    assert not report.ok


def test_crash_decoding_is_reported_as_the_decoder_finds_it() -> None:
    full = DecodingStatus("panic decoding", True, "full backtraces: gdb /usr/bin/gdb-multiarch")
    partial = DecodingStatus("core dump decoding", False, "none: missing esp-coredump", "pip install esp-coredump")
    panic, core = check_crash_decoding([full, partial])
    assert (panic.status, panic.what, panic.found) == (OK, "panic decoding", full.found)
    assert (core.status, core.fix) == (WARN, "pip install esp-coredump")
    assert "-> fix: pip install esp-coredump" in core.line()
    assert exit_code([panic, core]) == 0, "decoding that falls short is a warning, never a failure"


def test_espport_names_the_serial_port() -> None:
    checks = _by_what(run_checks(DoctorInputs(serial_ports=[], environ={"ESPPORT": "rfc2217://lab:4000"})))
    assert checks["serial port"].status == OK and "rfc2217://lab:4000" in checks["serial port"].found
