"""The real esptool 5.x against the virtual ESP32-P4 ROM loader on a pty."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from romboard import RomBoard

from harness.boards.virtual.flash import SpiFlash

MAC = "60:55:f9:12:34:56"
APP_OFFSET = 0x10000
TWO_MB = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory):
    with RomBoard(tmp_path_factory.mktemp("board"), mac=MAC) as running:
        yield running


@pytest.fixture(scope="module")
def image_2mb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 MB that compresses to about half: random 4 KB sectors alternating with runs of one byte."""
    rng = random.Random(7)
    sectors = [os.urandom(4096) if i % 2 else bytes([rng.randrange(256)]) * 4096 for i in range(TWO_MB // 4096)]
    path = tmp_path_factory.mktemp("img") / "image.bin"
    path.write_bytes(b"".join(sectors))
    return path


def flash_bytes(board: RomBoard, offset: int, length: int) -> bytes:
    with SpiFlash(board.flash_dir) as flash:
        return flash.read(offset, length)


def test_chip_id_reports_p4_revision_and_mac(board: RomBoard) -> None:
    result = board.esptool("chip-id")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Connected to ESP32-P4" in result.stdout
    assert "ESP32-P4 (revision v1.0)" in result.stdout
    assert f"MAC:                {MAC}" in result.stdout
    assert "Stub flasher running." in result.stdout


def test_read_mac_without_stub(board: RomBoard) -> None:
    result = board.esptool("read-mac", stub=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert MAC in result.stdout
    assert "Stub flasher running." not in result.stdout


def test_revision_v3_1_is_reported(tmp_path: Path) -> None:
    # On v3.1 esptool also runs its flash power-on sequence (PMU register writes).
    with RomBoard(tmp_path, chip_rev="v3.1") as board:
        result = board.esptool("flash-id")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ESP32-P4 (revision v3.1)" in result.stdout
    assert "Detected flash size: 16MB" in result.stdout


def test_flash_id_reads_winbond_16mb(board: RomBoard) -> None:
    result = board.esptool("flash-id")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Manufacturer: ef" in result.stdout
    assert "Device: 4018" in result.stdout
    assert "Detected flash size: 16MB" in result.stdout


@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom"])
@pytest.mark.parametrize("compress", ["--compress", "--no-compress"])
def test_write_flash_verifies(board: RomBoard, image_2mb: Path, stub: bool, compress: str) -> None:
    # Start from a different pattern so a write that silently did nothing cannot pass.
    board.esptool("erase-region", hex(APP_OFFSET), hex(TWO_MB))
    result = board.esptool("write-flash", compress, hex(APP_OFFSET), str(image_2mb), stub=stub)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Hash of data verified." in result.stdout
    if compress == "--compress":
        assert "compressed) at 0x00010000" in result.stdout
    assert flash_bytes(board, APP_OFFSET, TWO_MB) == image_2mb.read_bytes()


def test_read_flash_returns_written_bytes(board: RomBoard, image_2mb: Path, tmp_path: Path) -> None:
    assert board.esptool("write-flash", hex(APP_OFFSET), str(image_2mb)).returncode == 0
    out = tmp_path / "back.bin"
    result = board.esptool("read-flash", hex(APP_OFFSET), hex(TWO_MB), str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == image_2mb.read_bytes()


def test_read_flash_slow_through_rom(board: RomBoard, tmp_path: Path) -> None:
    payload = os.urandom(0x1000) + b"\xc0\xdb" * 0x800  # SLIP delimiter and escape bytes in the data
    src = tmp_path / "small.bin"
    src.write_bytes(payload)
    assert board.esptool("write-flash", "0x300000", str(src)).returncode == 0
    out = tmp_path / "back.bin"
    result = board.esptool("read-flash", "0x300000", hex(len(payload)), str(out), stub=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == payload


def test_erase_region_erases_only_that_region(board: RomBoard, tmp_path: Path) -> None:
    src = tmp_path / "zeros.bin"
    src.write_bytes(bytes(0x3000))
    assert board.esptool("write-flash", "0x200000", str(src)).returncode == 0
    result = board.esptool("erase-region", "0x201000", "0x1000")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "erased successfully" in result.stdout
    data = flash_bytes(board, 0x200000, 0x3000)
    assert data == bytes(0x1000) + b"\xff" * 0x1000 + bytes(0x1000)


def test_wrong_chip_argument_is_refused(board: RomBoard) -> None:
    result = board.esptool("chip-id", chip="esp32c3")
    assert result.returncode != 0
    assert "This chip is ESP32-P4, not ESP32-C3. Wrong chip argument?" in result.stdout + result.stderr


def test_flash_persists_across_loader_restarts(tmp_path: Path) -> None:
    payload = os.urandom(0x2000)
    src = tmp_path / "p.bin"
    src.write_bytes(payload)
    with RomBoard(tmp_path / "board") as board:
        assert board.esptool("write-flash", "0x20000", str(src)).returncode == 0
    with RomBoard(tmp_path / "board") as board:
        result = board.esptool("verify-flash", "0x20000", str(src))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verification successful (digest matched)." in result.stdout
