"""Test helper: build real ESP32-P4 flash images from tiny RISC-V ELFs (Debian's cross gcc + esptool elf2image).

``build_app_image`` compiles a do-nothing program whose ``.flash.appdesc`` section holds an
``esp_app_desc_t`` at the start of the flash-mapped region, links it for rv32imafc, and converts it with
``python -m esptool --chip <chip> elf2image`` exactly as ESP-IDF's build does (``--elf-sha256-offset
0xb0`` stores the ELF's SHA-256 in the descriptor). ``build_bootloader_image`` makes a RAM-only image
for 0x2000 and ``build_partition_table`` the binary table for 0x8000, so a virtual board can be given
the same three files ``idf.py flash`` writes.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CROSS_GCC = "riscv64-linux-gnu-gcc"
APP_DESC_SHA_OFFSET = 0xB0  # image header 24 + segment header 8 + offsetof(esp_app_desc_t, app_elf_sha256) 144
FLASH_VADDR = 0x40000020  # first byte of flash-mapped memory after the image and segment headers
BOOTLOADER_VADDR = 0x4FF2C000  # inside HP L2MEM, where ESP-IDF loads the P4 2nd-stage bootloader
COMMAND_TIMEOUT_S = 60

_APP_SOURCE = r"""
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

struct esp_app_desc {
    u32 magic_word;
    u32 secure_version;
    u32 reserv1[2];
    char version[32];
    char project_name[32];
    char time[16];
    char date[16];
    char idf_ver[32];
    u8 app_elf_sha256[32];
    u16 min_efuse_blk_rev_full;
    u16 max_efuse_blk_rev_full;
    u8 mmu_page_size;
    u8 reserv3[3];
    u32 reserv2[18];
};

__attribute__((section(".flash.appdesc"), used))
const struct esp_app_desc esp_app_desc = {
    .magic_word = 0xABCD5432,
    .secure_version = 0,
    .version = "@VERSION@",
    .project_name = "@PROJECT@",
    .time = "@TIME@",
    .date = "@DATE@",
    .idf_ver = "@IDF_VER@",
    .max_efuse_blk_rev_full = 0xFFFF,
    .mmu_page_size = 16,
};

__attribute__((section(".flash.rodata"))) const char greeting[] = "esp-smoltcp-hil test app";

void _start(void) {
    volatile const char *p = greeting;
    for (;;) { (void)*p; }
}
"""

_APP_LINKER_SCRIPT = f"""
ENTRY(_start)
SECTIONS
{{
    . = 0x{FLASH_VADDR:08x};
    .flash.appdesc : {{ KEEP(*(.flash.appdesc)) }}
    .flash.rodata : {{ *(.flash.rodata) *(.rodata*) *(.srodata*) }}
    . = ALIGN(0x10000) + 0x20;
    .flash.text : {{ *(.text*) }}
    /DISCARD/ : {{ *(.comment) *(.riscv.attributes) *(.note*) *(.eh_frame*) }}
}}
"""

_BOOTLOADER_SOURCE = r"""
void _start(void) { for (;;) { } }
"""

_BOOTLOADER_LINKER_SCRIPT = f"""
ENTRY(_start)
SECTIONS
{{
    . = 0x{BOOTLOADER_VADDR:08x};
    .iram.text : {{ *(.text*) }}
    /DISCARD/ : {{ *(.comment) *(.riscv.attributes) *(.note*) *(.eh_frame*) }}
}}
"""


@dataclass(frozen=True)
class AppDescription:
    """The strings placed in the app descriptor (each must fit its field, NUL included)."""

    project_name: str = "hil_test_app"
    version: str = "v0.1.0-test"
    idf_ver: str = "v5.5.1"
    time: str = "12:34:56"
    date: str = "Jan  1 2026"


@dataclass(frozen=True)
class BuiltApp:
    """An app image and the ELF it came from."""

    elf: Path
    image: Path
    elf_sha256: str


def have_cross_compiler() -> bool:
    """True when Debian's RISC-V cross gcc is installed."""
    return shutil.which(CROSS_GCC) is not None


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _compile(source: str, linker_script: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    c_file = out.with_suffix(".c")
    ld_file = out.with_suffix(".ld")
    c_file.write_text(source)
    ld_file.write_text(linker_script)
    _run(
        [
            CROSS_GCC,
            "-march=rv32imafc",
            "-mabi=ilp32f",
            "-Os",
            "-nostdlib",
            "-ffreestanding",
            "-static",
            "-fno-pic",
            "-Wl,-m,elf32lriscv",
            "-Wl,--build-id=none",
            f"-Wl,-T,{ld_file}",
            "-o",
            str(out),
            str(c_file),
        ],
        out.parent,
    )


def _elf2image(elf: Path, image: Path, chip: str, extra: list[str]) -> None:
    _run([sys.executable, "-m", "esptool", "--chip", chip, "elf2image", *extra, "-o", str(image), str(elf)], elf.parent)


def _c_string(value: str, size: int) -> str:
    if len(value.encode()) >= size or any(ch in value for ch in '"\\\n'):
        raise ValueError(f"{value!r} does not fit a {size}-byte C string field")
    return value


def build_app_image(
    workdir: Path,
    desc: AppDescription | None = None,
    *,
    chip: str = "esp32p4",
    min_rev_full: int = 0,
    max_rev_full: int = 199,
    name: str = "app",
) -> BuiltApp:
    """Compile and convert a test app; revisions default to the v1.x range of ESP-IDF's P4 rev<3 builds."""
    desc = desc or AppDescription()
    source = (
        _APP_SOURCE.replace("@VERSION@", _c_string(desc.version, 32))
        .replace("@PROJECT@", _c_string(desc.project_name, 32))
        .replace("@TIME@", _c_string(desc.time, 16))
        .replace("@DATE@", _c_string(desc.date, 16))
        .replace("@IDF_VER@", _c_string(desc.idf_ver, 32))
    )
    elf = workdir / f"{name}.elf"
    _compile(source, _APP_LINKER_SCRIPT, elf)
    image = workdir / f"{name}.bin"
    extra = [
        "--elf-sha256-offset",
        hex(APP_DESC_SHA_OFFSET),
        "--min-rev-full",
        str(min_rev_full),
        "--max-rev-full",
        str(max_rev_full),
        "--flash-size",
        "16MB",
    ]
    _elf2image(elf, image, chip, extra)
    return BuiltApp(elf, image, hashlib.sha256(elf.read_bytes()).hexdigest())


def build_bootloader_image(workdir: Path) -> Path:
    """A RAM-only ESP32-P4 image standing in for the 2nd-stage bootloader at 0x2000."""
    elf = workdir / "bootloader.elf"
    _compile(_BOOTLOADER_SOURCE, _BOOTLOADER_LINKER_SCRIPT, elf)
    image = workdir / "bootloader.bin"
    _elf2image(elf, image, "esp32p4", ["--flash-size", "16MB"])
    return image


PARTITION_TYPES = {"app": 0x00, "data": 0x01}
PARTITION_SUBTYPES = {"factory": 0x00, "ota_0": 0x10, "ota_1": 0x11, "ota": 0x00, "phy": 0x01, "nvs": 0x02}


def build_partition_table(
    path: Path,
    entries: list[tuple[str, str, str, int, int]] | None = None,
) -> Path:
    """Write a binary partition table (ESP-IDF format, with the MD5 entry); default: nvs, phy, 1 MB factory."""
    entries = entries or [
        ("nvs", "data", "nvs", 0x9000, 0x6000),
        ("phy_init", "data", "phy", 0xF000, 0x1000),
        ("factory", "app", "factory", 0x10000, 0x100000),
    ]
    table = b""
    for label, ptype, subtype, offset, size in entries:
        table += struct.pack(
            "<HBBII16sI", 0x50AA, PARTITION_TYPES[ptype], PARTITION_SUBTYPES[subtype], offset, size, label.encode(), 0
        )
    table += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(table).digest()
    path.write_bytes(table.ljust(0xC00, b"\xff"))
    return path
