"""The factory image a new virtual board carries, and the DTR/RTS auto-reset circuit model (no root needed)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness import __version__
from harness.boards.virtual.factory_image import factory_images, program_factory_image
from harness.boards.virtual.firmware import IDF_VERSION, firmware_sha256
from harness.boards.virtual.flash import SpiFlash
from harness.boards.virtual.image import BOOTLOADER_OFFSET, DEFAULT_APP_OFFSET, decide_boot
from harness.boards.virtual.rfc2217 import AutoResetCircuit
from harness.boards.virtual.supervisor import twin_descriptor


@pytest.mark.parametrize(("rev", "other"), [(100, 301), (301, 100)])
def test_factory_image_boots_the_twin_on_its_revision_only(tmp_path: Path, rev: int, other: int) -> None:
    with SpiFlash(tmp_path) as flash:
        program_factory_image(flash, twin_descriptor(), rev)
        decision = decide_boot(flash, chip_rev=rev)
        wrong = decide_boot(flash, chip_rev=other)
    assert decision.boots, decision.lines
    desc = decision.app.descriptor
    assert (desc.project_name, desc.version, desc.idf_ver) == ("hil_app", __version__, IDF_VERSION)
    assert desc.app_elf_sha256 == firmware_sha256()
    assert not wrong.boots and wrong.boot_loop
    assert any("Image requires chip rev" in line for line in wrong.lines)


def test_esptool_image_info_accepts_factory_images(tmp_path: Path) -> None:
    images = factory_images(twin_descriptor(), 100)
    for offset in (BOOTLOADER_OFFSET, DEFAULT_APP_OFFSET):
        path = tmp_path / f"{offset:x}.bin"
        path.write_bytes(images[offset])
        result = subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32p4", "image-info", str(path)],
                                capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Chip ID: 18 (ESP32-P4)" in result.stdout
        assert "Checksum: " in result.stdout and "(valid)" in result.stdout
        assert "Validation hash: " in result.stdout and "(invalid)" not in result.stdout
    assert "Project name: hil_app" in result.stdout
    assert f"ELF file SHA256: {firmware_sha256()}" in result.stdout


class Recorder:
    """Collects what the circuit asks of the board."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.booted = threading.Event()

    def hold(self) -> None:
        self.events.append("hold")

    def boot(self, download: bool) -> None:
        self.events.append("download" if download else "reset")
        self.booted.set()


def make_circuit(window: float = 0.15) -> tuple[AutoResetCircuit, Recorder]:
    recorder = Recorder()
    return AutoResetCircuit(recorder.hold, recorder.boot, strap_window_s=window), recorder


def test_classic_reset_sequence_enters_download_mode() -> None:
    # esptool's ClassicReset over RFC2217, including set_rts()'s re-write of DTR.
    circuit, rec = make_circuit()
    circuit.set_lines(dtr=True, rts=True)  # port open: both asserted, nothing happens
    circuit.set_lines(dtr=False)
    circuit.set_lines(rts=True)
    circuit.set_lines(dtr=False)  # EN low
    circuit.set_lines(dtr=True)  # EN rises with IO0 still high ...
    circuit.set_lines(rts=False)  # ... and IO0 falls a moment later: download strap
    circuit.set_lines(dtr=True)
    circuit.set_lines(dtr=False)
    assert rec.events == ["hold", "download"]


def test_hard_reset_boots_from_flash_after_the_strap_window() -> None:
    circuit, rec = make_circuit(window=0.05)
    circuit.set_lines(rts=True)
    circuit.set_lines(dtr=False)
    circuit.set_lines(rts=False)
    circuit.set_lines(dtr=False)
    assert rec.booted.wait(5)
    assert rec.events == ["hold", "reset"]


def test_io0_low_while_en_rises_is_download_and_both_lines_do_nothing() -> None:
    circuit, rec = make_circuit()
    circuit.set_lines(dtr=True, rts=True)
    circuit.set_lines(dtr=False, rts=False)
    assert rec.events == []
    circuit.set_lines(rts=True)  # EN low
    circuit.set_lines(dtr=True, rts=False)  # atomic: EN high and IO0 low together (UnixTightReset)
    assert rec.events == ["hold", "download"]
    circuit.close()


def test_control_socket_path_fits_af_unix(tmp_path: Path) -> None:
    from harness.boards.virtual.supervisor import UNIX_PATH_MAX, control_socket_path

    assert control_socket_path(tmp_path) == tmp_path / "control.sock"
    deep = tmp_path / ("d" * 120)
    assert len(str(control_socket_path(deep)).encode()) < UNIX_PATH_MAX
