"""Boot decisions for images built by the real toolchain (cross gcc + esptool elf2image)."""

from __future__ import annotations

from pathlib import Path

import pytest
from appimage import AppDescription, build_app_image, build_bootloader_image, build_partition_table, have_cross_compiler
from romboard import RomBoard

from harness.boards.virtual.flash import SpiFlash
from harness.boards.virtual.image import BOOTLOADER_OFFSET, DEFAULT_APP_OFFSET, PARTITION_TABLE_OFFSET, decide_boot

pytestmark = pytest.mark.skipif(
    not have_cross_compiler(), reason="needs Debian's gcc-riscv64-linux-gnu (apt-get install gcc-riscv64-linux-gnu)"
)

DESC = AppDescription(project_name="smoltcp_hil_app", version="v1.2.3-test", idf_ver="v5.5.1")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("build")
    return {
        "app": build_app_image(work, DESC),
        "bootloader": build_bootloader_image(work),
        "table": build_partition_table(work / "partition-table.bin"),
        "v3_app": build_app_image(work, DESC, min_rev_full=301, max_rev_full=399, name="app_v3"),
        "c3_app": build_app_image(work, DESC, chip="esp32c3", name="app_c3"),
        "work": work,
    }


def flash_with(tmp_path: Path, files: dict[int, bytes]) -> SpiFlash:
    flash = SpiFlash(tmp_path / "board")
    for offset, data in files.items():
        flash.write(offset, data)
    return flash


def full_set(built: dict, app: Path | None = None) -> dict[int, bytes]:
    return {
        BOOTLOADER_OFFSET: built["bootloader"].read_bytes(),
        PARTITION_TABLE_OFFSET: built["table"].read_bytes(),
        DEFAULT_APP_OFFSET: (app or built["app"].image).read_bytes(),
    }


def test_flashed_app_boots_and_shows_its_descriptor(built: dict, tmp_path: Path) -> None:
    with flash_with(tmp_path, full_set(built)) as flash:
        decision = decide_boot(flash, chip_rev=100)
    assert decision.boots and not decision.boot_loop
    desc = decision.app.descriptor
    assert (desc.project_name, desc.version, desc.idf_ver) == ("smoltcp_hil_app", "v1.2.3-test", "v5.5.1")
    assert desc.app_elf_sha256 == built["app"].elf_sha256
    assert decision.app.header.chip_id == 18
    text = "\n".join(decision.lines)
    assert "boot: Loaded app from partition at offset 0x10000" in text
    assert "app_init: Project name:     smoltcp_hil_app" in text
    assert "app_init: App version:      v1.2.3-test" in text
    assert f"app_init: ELF file SHA256:  {built['app'].elf_sha256[:16]}..." in text
    assert "app_init: ESP-IDF:          v5.5.1" in text


def test_erased_flash_boot_loops_on_invalid_header(tmp_path: Path) -> None:
    with SpiFlash(tmp_path) as flash:
        decision = decide_boot(flash, chip_rev=100)
    assert not decision.boots and decision.boot_loop
    assert decision.lines == ["invalid header: 0xffffffff"]


def test_erased_partition_table_has_no_app(built: dict, tmp_path: Path) -> None:
    # An erased table reads as a valid, empty one (its first entry is the 0xFFFF end marker).
    with flash_with(tmp_path, {BOOTLOADER_OFFSET: built["bootloader"].read_bytes()}) as flash:
        decision = decide_boot(flash, chip_rev=100)
    assert not decision.boots and decision.boot_loop
    assert decision.lines == ["E (30) boot: No bootable app partitions in the partition table"]


def test_garbage_partition_table_is_reported(built: dict, tmp_path: Path) -> None:
    files = {BOOTLOADER_OFFSET: built["bootloader"].read_bytes(), PARTITION_TABLE_OFFSET: b"\x34\x12" + bytes(30)}
    with flash_with(tmp_path, files) as flash:
        decision = decide_boot(flash, chip_rev=100)
    assert not decision.boots and decision.boot_loop
    assert decision.lines[0].endswith("flash_parts: partition 0 invalid magic number 0x1234")
    assert decision.lines[1].endswith("boot: Failed to verify partition table")


def test_missing_app_is_not_bootable(built: dict, tmp_path: Path) -> None:
    files = full_set(built)
    del files[DEFAULT_APP_OFFSET]
    with flash_with(tmp_path, files) as flash:
        decision = decide_boot(flash, chip_rev=100)
    assert [line.split(") ", 1)[1] for line in decision.lines] == [
        "esp_image: image at 0x10000 has invalid magic byte (nothing flashed here?)",
        "boot: Factory app partition is not bootable",
        "boot: No bootable app partitions in the partition table",
    ]
    assert decision.lines[0].startswith("E (")


def test_corrupt_app_fails_its_checksum(built: dict, tmp_path: Path) -> None:
    image = bytearray(built["app"].image.read_bytes())
    image[0x20 + 200] ^= 0x01  # a byte inside the first segment, after the descriptor's sha field
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(image))
    with flash_with(tmp_path, full_set(built, bad)) as flash:
        decision = decide_boot(flash, chip_rev=100)
    assert not decision.boots
    assert "esp_image: Checksum failed. Calculated 0x" in decision.lines[0]
    assert decision.lines[1].endswith("boot: Factory app partition is not bootable")


def test_image_for_another_chip_is_refused(built: dict, tmp_path: Path) -> None:
    with flash_with(tmp_path, full_set(built, built["c3_app"].image)) as flash:
        decision = decide_boot(flash, chip_rev=100)
    assert not decision.boots
    assert decision.lines[0].endswith("boot_comm: mismatch chip ID, expected 18, found 5")


def test_v3_image_is_refused_on_v1_chip(built: dict, tmp_path: Path) -> None:
    with flash_with(tmp_path, full_set(built, built["v3_app"].image)) as flash:
        decision = decide_boot(flash, chip_rev=100)
    assert not decision.boots
    assert decision.lines[0].endswith("boot_comm: Image requires chip rev >= v3.1, but chip is v1.0")


def test_v1_image_is_refused_on_v3_chip(built: dict, tmp_path: Path) -> None:
    with flash_with(tmp_path, full_set(built)) as flash:
        refused = decide_boot(flash, chip_rev=301)
    assert refused.lines[0].endswith("boot_comm: Image requires chip rev <= v1.99, but chip is v3.1")


def test_esptool_flashes_full_set_and_rom_runs_the_app(built: dict, tmp_path: Path) -> None:
    work = built["work"]
    with RomBoard(tmp_path / "board") as board:
        result = board.esptool(
            "write-flash",
            hex(BOOTLOADER_OFFSET), str(work / "bootloader.bin"),
            hex(PARTITION_TABLE_OFFSET), str(work / "partition-table.bin"),
            hex(DEFAULT_APP_OFFSET), str(built["app"].image),
            stub=False, after="soft-reset",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        event = board.next_event(timeout=10)
    assert event["event"] == "run_app"
    assert event["boot"]["boots"] is True
    assert event["boot"]["app"]["project_name"] == "smoltcp_hil_app"
    assert event["boot"]["app"]["app_elf_sha256"] == built["app"].elf_sha256
