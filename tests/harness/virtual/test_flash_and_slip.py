"""The virtual SPI flash's NOR rules and the loader's SLIP framing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.boards.virtual.flash import FLASH_SIZE, SpiFlash
from harness.boards.virtual.rom import SlipDecoder, parse_chip_rev, parse_mac, slip_encode
from harness.errors import BoardError, ConfigError


def test_new_flash_is_erased_and_sparse(tmp_path: Path) -> None:
    with SpiFlash(tmp_path) as flash:
        assert flash.read(FLASH_SIZE - 16, 16) == b"\xff" * 16
        assert os.stat(flash.path).st_blocks * 512 < 64 * 1024


def test_programming_only_clears_bits_until_erased(tmp_path: Path) -> None:
    with SpiFlash(tmp_path) as flash:
        flash.write(0x1000, b"\x0f\xf0")
        flash.write(0x1000, b"\x3c\x3c")  # no erase in between: old AND new
        assert flash.read(0x1000, 2) == b"\x0c\x30"
        flash.erase(0x1800, 1)  # erases the whole sector containing 0x1800
        assert flash.read(0x1000, 2) == b"\xff\xff"


def test_flash_contents_persist(tmp_path: Path) -> None:
    with SpiFlash(tmp_path) as flash:
        flash.write(0x123456, b"hello")
    with SpiFlash(tmp_path) as flash:
        assert flash.read(0x123456, 5) == b"hello"


def test_access_outside_the_flash_is_an_error(tmp_path: Path) -> None:
    with SpiFlash(tmp_path) as flash, pytest.raises(BoardError, match="outside the 16 MB flash"):
        flash.read(FLASH_SIZE - 1, 2)


def test_slip_round_trip_with_escapes_split_across_reads() -> None:
    packets = [b"\x00\x08\xc0\xdb\xdb\xdc", b"plain", bytes(range(256))]
    wire = b"noise" + b"".join(slip_encode(p) for p in packets)
    decoder = SlipDecoder()
    received = []
    for index in range(0, len(wire), 3):
        received += decoder.feed(wire[index : index + 3])
    assert received == packets


@pytest.mark.parametrize(("text", "value"), [("v1.0", 100), ("3.1", 301), (302, 302)])
def test_chip_revision_spellings(text: str | int, value: int) -> None:
    assert parse_chip_rev(text) == value


@pytest.mark.parametrize("bad", ["v9.0", "three", "1.16"])
def test_bad_chip_revision_says_how_to_write_it(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"v1\.0"):
        parse_chip_rev(bad)


def test_bad_mac_says_how_to_write_it() -> None:
    assert parse_mac("60:55:F9:00:00:01") == bytes.fromhex("6055f9000001")
    with pytest.raises(ConfigError, match="aa:bb:cc:dd:ee:ff"):
        parse_mac("60:55:f9")
