"""What a virtual ESP32-P4 boots from its flash: ESP app images, the partition table and the boot decision.

Formats follow ESP-IDF: ``esp_image_header_t`` (24 bytes, magic 0xE9, chip id, min/max chip revision),
8-byte segment headers, the XOR checksum and optional SHA-256 after the segments, ``esp_app_desc_t``
(256 bytes, magic 0xABCD5432) at the start of the first segment, and the partition table at 0x8000
(32-byte entries, magic 0x50AA, an optional MD5 entry 0xEBEB). Refusals produce the lines the ROM and
the 2nd-stage bootloader print (``invalid header: 0xffffffff``, ``esp_image: ...``, ``boot_comm: Image
requires chip rev >= v3.1, but chip is v1.0``); timestamps in ``E (ms)`` are simulated.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass

from harness.boards.virtual.flash import SpiFlash

IMAGE_MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432
ESP32P4_CHIP_ID = 18
BOOTLOADER_OFFSET = 0x2000
PARTITION_TABLE_OFFSET = 0x8000
DEFAULT_APP_OFFSET = 0x10000
MAX_SEGMENTS = 16
HEADER_SIZE = 24
SEGMENT_HEADER_SIZE = 8
APP_DESC_SIZE = 256
CHECKSUM_SEED = 0xEF
PARTITION_MAGIC = 0x50AA
PARTITION_MD5_MAGIC = 0xEBEB
PARTITION_ENTRY_SIZE = 32
PARTITION_TABLE_MAX = 0xC00
APP_TYPE = 0x00
FACTORY_SUBTYPE = 0x00
OTA0_SUBTYPE = 0x10

ReadFn = Callable[[int, int], bytes]


class ImageError(Exception):
    """An image the bootloader refuses; ``lines`` are (tag, message) pairs as ESP-IDF logs them."""

    def __init__(self, lines: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{tag}: {text}" for tag, text in lines))
        self.lines = lines


@dataclass(frozen=True)
class ImageHeader:
    """The fields of ``esp_image_header_t`` the boot path looks at."""

    segment_count: int
    spi_mode: int
    entry_addr: int
    chip_id: int
    min_chip_rev_full: int
    max_chip_rev_full: int
    hash_appended: bool


@dataclass(frozen=True)
class Segment:
    """One image segment: where it loads and where its data sits in flash."""

    load_addr: int
    flash_offset: int
    length: int


@dataclass(frozen=True)
class AppDescriptor:
    """``esp_app_desc_t``: what ESP-IDF's app_init prints at boot."""

    secure_version: int
    version: str
    project_name: str
    time: str
    date: str
    idf_ver: str
    app_elf_sha256: str  # 64 hex characters

    @classmethod
    def parse(cls, raw: bytes) -> AppDescriptor | None:
        """Decode 256 bytes, or None when the magic word is missing."""
        if len(raw) < APP_DESC_SIZE or struct.unpack_from("<I", raw)[0] != APP_DESC_MAGIC:
            return None

        def text(start: int, size: int) -> str:
            return raw[start : start + size].split(b"\0", 1)[0].decode("utf-8", "replace")

        (secure_version,) = struct.unpack_from("<I", raw, 4)
        return cls(
            secure_version=secure_version,
            version=text(16, 32),
            project_name=text(48, 32),
            time=text(80, 16),
            date=text(96, 16),
            idf_ver=text(112, 32),
            app_elf_sha256=raw[144:176].hex(),
        )


@dataclass(frozen=True)
class AppImage:
    """A verified app image."""

    offset: int
    header: ImageHeader
    segments: list[Segment]
    descriptor: AppDescriptor
    length: int


@dataclass(frozen=True)
class Partition:
    """One partition table entry."""

    label: str
    type: int
    subtype: int
    offset: int
    size: int


@dataclass
class BootDecision:
    """What the board does after a reset into SPI boot.

    Attributes:
        boots: True when the app starts.
        lines: Console lines the ROM / bootloader / app startup print (without line endings).
        boot_loop: True when the chip resets and prints ``lines`` again, forever.
        app: The image that boots (None on failure).
        partition: The app partition chosen (None when the table is unusable).
    """

    boots: bool
    lines: list[str]
    boot_loop: bool
    app: AppImage | None = None
    partition: Partition | None = None
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        """A JSON-ready summary (the app descriptor, or why the boot failed)."""
        return {
            "boots": self.boots,
            "boot_loop": self.boot_loop,
            "reason": self.reason,
            "app": asdict(self.app.descriptor) if self.app else None,
            "app_offset": self.app.offset if self.app else None,
            "lines": self.lines,
        }


def format_rev(rev: int) -> str:
    """Chip revision 301 -> ``v3.1``."""
    return f"v{rev // 100}.{rev % 100}"


def _max_rev_set(max_rev: int) -> bool:
    return max_rev not in (0, 0xFFFF)


def parse_header(raw: bytes) -> ImageHeader | None:
    """Decode ``esp_image_header_t``; None when the magic byte is wrong."""
    if len(raw) < HEADER_SIZE or raw[0] != IMAGE_MAGIC:
        return None
    _magic, count, spi_mode, _speed_size, entry, _wp, _drv, chip_id, _old_rev, min_rev, max_rev, _res, hashed = (
        struct.unpack_from("<BBBBIB3sHBHH4sB", raw)
    )
    return ImageHeader(count, spi_mode, entry, chip_id, min_rev, max_rev, bool(hashed))


def check_chip_validity(header: ImageHeader, chip_rev: int, chip_id: int = ESP32P4_CHIP_ID) -> list[tuple[str, str]]:
    """The refusals of ESP-IDF's ``bootloader_common_check_chip_validity`` for an app image."""
    if header.chip_id != chip_id:
        return [("boot_comm", f"mismatch chip ID, expected {chip_id}, found {header.chip_id}")]
    errors = []
    chip = format_rev(chip_rev)
    if header.min_chip_rev_full > chip_rev:
        wanted = format_rev(header.min_chip_rev_full)
        errors.append(("boot_comm", f"Image requires chip rev >= {wanted}, but chip is {chip}"))
    if _max_rev_set(header.max_chip_rev_full) and chip_rev > header.max_chip_rev_full:
        wanted = format_rev(header.max_chip_rev_full)
        errors.append(("boot_comm", f"Image requires chip rev <= {wanted}, but chip is {chip}"))
    return errors


def load_app_image(read: ReadFn, offset: int, *, chip_rev: int, max_length: int) -> AppImage:
    """Verify the app image at ``offset`` as the 2nd-stage bootloader does; raise :class:`ImageError`."""
    raw_header = read(offset, HEADER_SIZE)
    header = parse_header(raw_header)
    if header is None:
        raise ImageError([("esp_image", f"image at 0x{offset:x} has invalid magic byte (nothing flashed here?)")])
    errors = check_chip_validity(header, chip_rev)
    if errors:
        raise ImageError(errors)
    if header.segment_count > MAX_SEGMENTS:
        raise ImageError(
            [
                (
                    "esp_image",
                    f"image at 0x{offset:x} segment count {header.segment_count} exceeds max {MAX_SEGMENTS}",
                )
            ]
        )
    segments = []
    checksum = CHECKSUM_SEED
    position = offset + HEADER_SIZE
    for _ in range(header.segment_count):
        load_addr, length = struct.unpack("<II", read(position, SEGMENT_HEADER_SIZE))
        position += SEGMENT_HEADER_SIZE
        if position + length - offset > max_length:
            raise ImageError(
                [
                    (
                        "esp_image",
                        f"Image length {position + length - offset} doesn't fit in partition length {max_length}",
                    )
                ]
            )
        data = read(position, length)
        for byte in data:
            checksum ^= byte
        segments.append(Segment(load_addr, position, length))
        position += length
    # The checksum byte sits at the end of a 16-byte-aligned block.
    checksum_at = position + (15 - (position - offset) % 16)
    stored = read(checksum_at, 1)[0]
    if stored != checksum:
        raise ImageError([("esp_image", f"Checksum failed. Calculated 0x{checksum:x} read 0x{stored:x}")])
    length = checksum_at + 1 - offset
    if header.hash_appended:
        body = read(offset, length)
        if hashlib.sha256(body).digest() != read(offset + length, 32):
            raise ImageError([("esp_image", "Image hash failed - image is corrupt")])
        length += 32
    descriptor = AppDescriptor.parse(read(segments[0].flash_offset, APP_DESC_SIZE)) if segments else None
    if descriptor is None:
        raise ImageError([("esp_image", "Failed to fetch app description header!")])
    return AppImage(offset, header, segments, descriptor, length)


def parse_partition_table(raw: bytes) -> list[Partition]:
    """Decode the partition table; raise :class:`ImageError` with the lines ESP-IDF prints when invalid."""
    partitions = []
    md5_seen = False
    for index in range(len(raw) // PARTITION_ENTRY_SIZE):
        entry = raw[index * PARTITION_ENTRY_SIZE : (index + 1) * PARTITION_ENTRY_SIZE]
        magic, ptype, subtype, offset, size, label, _flags = struct.unpack("<HBBII16sI", entry)
        if magic == PARTITION_MAGIC and not md5_seen:
            name = label.split(b"\0", 1)[0].decode("utf-8", "replace")
            partitions.append(Partition(name, ptype, subtype, offset, size))
        elif magic == PARTITION_MD5_MAGIC and not md5_seen:
            if hashlib.md5(raw[: index * PARTITION_ENTRY_SIZE]).digest() != entry[16:]:
                raise ImageError([("flash_parts", "Incorrect MD5 checksum")])
            md5_seen = True
        elif magic == 0xFFFF and ptype == 0xFF and subtype == 0xFF:
            return partitions
        else:
            raise ImageError([("flash_parts", f"partition {index} invalid magic number 0x{magic:x}")])
    raise ImageError([("flash_parts", "partition table has no terminating entry, not valid")])


def choose_app_partition(partitions: list[Partition]) -> tuple[Partition, str] | None:
    """The factory app, else OTA slot 0 (otadata is not consulted); with the name the bootloader logs."""
    apps = [p for p in partitions if p.type == APP_TYPE]
    for partition in apps:
        if partition.subtype == FACTORY_SUBTYPE:
            return partition, "Factory app partition"
    for partition in apps:
        if partition.subtype == OTA0_SUBTYPE:
            return partition, "OTA app partition slot 0"
    return None


class _Console:
    """Collects log lines with a simulated millisecond clock."""

    def __init__(self, start_ms: int = 30) -> None:
        self.lines: list[str] = []
        self.ms = start_ms

    def log(self, level: str, tag: str, text: str) -> None:
        self.lines.append(f"{level} ({self.ms}) {tag}: {text}")
        self.ms += 5


def decide_boot(flash: SpiFlash, *, chip_rev: int) -> BootDecision:
    """Decide what a reset into SPI boot does with this flash, as the ROM and 2nd-stage bootloader would."""
    read = flash.read
    bootloader_word = struct.unpack("<I", read(BOOTLOADER_OFFSET, 4))[0]
    if bootloader_word & 0xFF != IMAGE_MAGIC:
        # The ROM finds no 2nd-stage bootloader and retries forever.
        return BootDecision(False, [f"invalid header: 0x{bootloader_word:08x}"], True, reason="no bootloader")

    console = _Console()
    try:
        partitions = parse_partition_table(read(PARTITION_TABLE_OFFSET, PARTITION_TABLE_MAX))
    except ImageError as exc:
        for tag, text in exc.lines:
            console.log("E", tag, text)
        console.log("E", "boot", "Failed to verify partition table")
        console.log("E", "boot", "load partition table error!")
        return BootDecision(False, console.lines, True, reason="bad partition table")

    chosen = choose_app_partition(partitions)
    if chosen is None:
        console.log("E", "boot", "No bootable app partitions in the partition table")
        return BootDecision(False, console.lines, True, reason="no app partition")
    partition, description = chosen
    try:
        app = load_app_image(read, partition.offset, chip_rev=chip_rev, max_length=partition.size)
    except ImageError as exc:
        for tag, text in exc.lines:
            console.log("E", tag, text)
        console.log("E", "boot", f"{description} is not bootable")
        console.log("E", "boot", "No bootable app partitions in the partition table")
        return BootDecision(False, console.lines, True, partition=partition, reason=str(exc))

    for index, segment in enumerate(app.segments):
        console.log(
            "I",
            "esp_image",
            f"segment {index}: paddr={segment.flash_offset:08x} vaddr={segment.load_addr:08x} "
            f"size={segment.length:05x}h ({segment.length:6d})",
        )
    console.log("I", "boot", f"Loaded app from partition at offset 0x{partition.offset:x}")
    desc = app.descriptor
    console.log("I", "app_init", "Application information:")
    console.log("I", "app_init", f"Project name:     {desc.project_name}")
    console.log("I", "app_init", f"App version:      {desc.version}")
    console.log("I", "app_init", f"Compile time:     {desc.date} {desc.time}")
    console.log("I", "app_init", f"ELF file SHA256:  {desc.app_elf_sha256[:16]}...")
    console.log("I", "app_init", f"ESP-IDF:          {desc.idf_ver}")
    console.log("I", "app_init", f"Chip rev:         {format_rev(chip_rev)}")
    return BootDecision(True, console.lines, False, app=app, partition=partition, reason="ok")
