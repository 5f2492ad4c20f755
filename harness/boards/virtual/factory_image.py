"""The image a brand-new virtual ESP32-P4 leaves the factory with: bootloader, partition table and app.

Built in pure Python (no cross compiler): a RAM-only 2nd-stage bootloader image at 0x2000, ESP-IDF's
binary partition table at 0x8000 (nvs, phy_init, a 2 MB factory app, with the MD5 entry) and an app
image at 0x10000 whose first, flash-mapped segment starts with an ``esp_app_desc_t``. All three are
in the formats ESP-IDF and ``esptool elf2image`` produce (24-byte header, 8-byte segment headers, XOR
checksum, appended SHA-256), so ``esptool image-info`` and the virtual bootloader accept them, and
erasing or overwriting them gives the real failure output.

The app descriptor says what the board's own app is: project ``hil_app``, the harness version, the
board's ESP-IDF version string and, as "ELF SHA-256", the digest of its console side and native firmware.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from harness.boards.virtual.flash import SpiFlash
from harness.boards.virtual.image import (
    APP_DESC_MAGIC,
    BOOTLOADER_OFFSET,
    CHECKSUM_SEED,
    DEFAULT_APP_OFFSET,
    ESP32P4_CHIP_ID,
    IMAGE_MAGIC,
    PARTITION_MAGIC,
    PARTITION_MD5_MAGIC,
    PARTITION_TABLE_MAX,
    PARTITION_TABLE_OFFSET,
)

SPI_MODE_DIO = 2
FLASH_16MB_80MHZ = 0x4F  # high nibble: size code 4 = 16 MB; low nibble: 0xF = 80 MHz (esptool's P4 table)
WP_PIN_UNUSED = 0xEE
DROM_ADDR = 0x40000020  # flash-mapped data: file offset 0x20 maps to 0x40000020 (64 KB MMU pages)
APP_IRAM_ADDR = 0x4FF10000
BOOTLOADER_IRAM_ADDR = 0x4FF2C000
LOOP_FOREVER = struct.pack("<I", 0x0000006F)  # RISC-V `j .`
APP_PARTITION_SIZE = 0x200000
REV_RANGES = {"v1": (0, 199), "v3": (301, 399)}  # ESP-IDF 5.5's P4 builds: rev < 3 or rev >= 3.1


@dataclass(frozen=True)
class FactoryApp:
    """The strings in the factory app's descriptor."""

    project_name: str
    version: str
    idf_ver: str
    elf_sha256: str  # 64 hex digits
    time: str = "10:00:00"
    date: str = "Nov 21 2026"


def _field(text: str, size: int) -> bytes:
    raw = text.encode()
    if len(raw) >= size:
        raise ValueError(f"{text!r} does not fit a {size}-byte descriptor field")
    return raw.ljust(size, b"\0")


def app_descriptor(app: FactoryApp) -> bytes:
    """``esp_app_desc_t`` (256 bytes)."""
    sha = bytes.fromhex(app.elf_sha256)
    if len(sha) != 32:
        raise ValueError("elf_sha256 must be 64 hex digits")
    raw = struct.pack("<II8x", APP_DESC_MAGIC, 0)
    raw += _field(app.version, 32) + _field(app.project_name, 32) + _field(app.time, 16) + _field(app.date, 16)
    raw += _field(app.idf_ver, 32) + sha
    raw += struct.pack("<HHB3x", 0, 0xFFFF, 16)  # efuse block rev range: any; MMU page 2^16
    return raw.ljust(256, b"\0")


def build_image(segments: list[tuple[int, bytes]], entry: int, *, min_rev: int = 0, max_rev: int = 0xFFFF) -> bytes:
    """An ESP32-P4 image: header, segments (4-byte padded), XOR checksum at a 16-byte boundary, SHA-256."""
    header = struct.pack(
        "<BBBBIB3sHBHH4sB",
        IMAGE_MAGIC, len(segments), SPI_MODE_DIO, FLASH_16MB_80MHZ, entry, WP_PIN_UNUSED, b"\0\0\0",
        ESP32P4_CHIP_ID, 0, min_rev, max_rev, b"\0\0\0\0", 1,
    )  # fmt: skip
    body = bytearray(header)
    checksum = CHECKSUM_SEED
    for load_addr, data in segments:
        data = data.ljust(-(-len(data) // 4) * 4, b"\0")
        body += struct.pack("<II", load_addr, len(data)) + data
        for byte in data:
            checksum ^= byte
    body += bytes(15 - len(body) % 16) + bytes([checksum])
    return bytes(body) + hashlib.sha256(body).digest()


def rev_range(chip_rev: int) -> tuple[int, int]:
    """The (min, max) revision range an ESP-IDF 5.5 build for this chip revision carries."""
    return REV_RANGES["v3" if chip_rev >= 300 else "v1"]


def app_image(app: FactoryApp, chip_rev: int) -> bytes:
    """The factory app: descriptor + rodata in flash, a one-instruction main loop in IRAM."""
    min_rev, max_rev = rev_range(chip_rev)
    rodata = app_descriptor(app) + b"esp-smoltcp-hil virtual factory app\0"
    return build_image([(DROM_ADDR, rodata), (APP_IRAM_ADDR, LOOP_FOREVER)], APP_IRAM_ADDR,
                       min_rev=min_rev, max_rev=max_rev)  # fmt: skip


def bootloader_image(chip_rev: int) -> bytes:
    """A RAM-only stand-in for the 2nd-stage bootloader (the ROM only checks its header)."""
    min_rev, max_rev = rev_range(chip_rev)
    return build_image([(BOOTLOADER_IRAM_ADDR, LOOP_FOREVER)], BOOTLOADER_IRAM_ADDR, min_rev=min_rev, max_rev=max_rev)


def partition_table() -> bytes:
    """nvs, phy_init and a 2 MB factory app at 0x10000, with the MD5 entry, padded with 0xFF."""
    entries = [
        ("nvs", 0x01, 0x02, 0x9000, 0x6000),
        ("phy_init", 0x01, 0x01, 0xF000, 0x1000),
        ("factory", 0x00, 0x00, DEFAULT_APP_OFFSET, APP_PARTITION_SIZE),
    ]
    table = b"".join(
        struct.pack("<HBBII16sI", PARTITION_MAGIC, ptype, subtype, offset, size, label.encode(), 0)
        for label, ptype, subtype, offset, size in entries
    )
    table += struct.pack("<H", PARTITION_MD5_MAGIC) + b"\xff" * 14 + hashlib.md5(table).digest()
    return table.ljust(PARTITION_TABLE_MAX, b"\xff")


def factory_images(app: FactoryApp, chip_rev: int) -> dict[int, bytes]:
    """Offset -> bytes, as ``idf.py flash`` would write them."""
    return {
        BOOTLOADER_OFFSET: bootloader_image(chip_rev),
        PARTITION_TABLE_OFFSET: partition_table(),
        DEFAULT_APP_OFFSET: app_image(app, chip_rev),
    }


def program_factory_image(flash: SpiFlash, app: FactoryApp, chip_rev: int) -> None:
    """Erase and write the factory image set, as the board maker's programming station would."""
    for offset, data in factory_images(app, chip_rev).items():
        flash.erase(offset, len(data))
        flash.write(offset, data)
