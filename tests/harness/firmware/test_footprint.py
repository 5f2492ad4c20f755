"""The footprint read from esp-idf-size's per-archive JSON: each archive, the stack's archives, the image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.boards.esp32p4 import Esp32P4Board, FirmwareBuild
from harness.firmware.footprint import (
    SIZE_FILE,
    Footprint,
    FootprintError,
    parse_size_components,
    read_footprint,
    size_components_command,
)

# Hand-written in the shape esp-idf-size 2.3 prints for `--archives --format json2` on an ESP32-P4 build (memory
# types Flash, DIRAM, HP core RAM, External RAM, LP RAM): the smoltcp build's stack archives under their
# managed-component names, the Rust glue's staticlib, lwIP, and three others.
SAMPLE = Path(__file__).parent / "data" / "size_components_smoltcp.json"
STACK = [
    "libdatanoisetv__esp_smoltcp.a",
    "libdatanoisetv__esp_smoltcp_glue.a",
    "libdatanoisetv__esp_smoltcp_lwip_compat.a",
    "liblwip.a",
    "libsmoltcp_glue.a",
]


def sample() -> dict:
    return json.loads(SAMPLE.read_text())


def test_each_archive_splits_flash_code_data_and_internal_ram() -> None:
    archives = parse_size_components(sample()).archives
    assert archives["libfreertos.a"] == Footprint(
        flash_code=460, flash_data=1000, iram_code=15808, dram_data=102, dram_bss=3869
    )
    # .tcm.text in HP core RAM is code in internal RAM; LP RAM's .rtc_reserved is none of the five.
    assert archives["libesp_hw_support.a"] == Footprint(18322, 2379, 8308 + 10, 2523, 104)
    assert archives["libesp_hw_support.a"].static_ram == 8318 + 2523 + 104


def test_external_ram_is_not_static_internal_ram() -> None:
    main = parse_size_components(sample()).archives["libmain.a"]
    assert main.dram_bss == 6120  # the 64 KiB .ext_ram.bss (External RAM) is left out


def test_stack_sums_the_smoltcp_components_the_rust_glue_and_lwip() -> None:
    footprint = parse_size_components(sample())
    assert footprint.stack_archives == STACK
    assert footprint.stack == Footprint(
        flash_code=14020 + 36 + 11876 + 1204 + 58112,
        flash_data=2210 + 1540 + 310 + 6604,
        iram_code=0,
        dram_data=48 + 16 + 4,
        dram_bss=1312 + 2688 + 40 + 72,
    )
    metrics = footprint.metrics()
    assert metrics["stack_flash_code"] == 85248
    assert metrics["stack_static_ram"] == 68 + 4112
    assert metrics["image_flash_code"] == sum(a.flash_code for a in footprint.archives.values())
    assert set(metrics) == {f"{part}_{size}" for part in ("stack", "image") for size in Footprint().as_dict()}


def test_lwip_build_counts_lwip_alone() -> None:
    data = {path: entry for path, entry in sample().items() if "smoltcp" not in path}
    footprint = parse_size_components(data)
    assert footprint.stack_archives == ["liblwip.a"]
    assert footprint.stack == footprint.archives["liblwip.a"]


def test_summary_view_is_refused_with_the_command_to_run() -> None:
    summary = {"version": "1.2", "total_size": 1, "layout": []}
    with pytest.raises(FootprintError, match="size-components --format json2"):
        parse_size_components(summary)


def test_archive_without_memory_types_is_named() -> None:
    with pytest.raises(FootprintError, match=r"libx\.a"):
        parse_size_components({"esp-idf/x/libx.a": {"abbrev_name": "libx.a", "size": 3}})


def test_build_dir_without_size_file_has_no_footprint(tmp_path: Path) -> None:
    assert read_footprint(tmp_path) is None
    (tmp_path / SIZE_FILE).write_text("{not json")
    with pytest.raises(FootprintError, match=SIZE_FILE):
        read_footprint(tmp_path)


def test_size_command_writes_into_the_build_dir(tmp_path: Path) -> None:
    command = size_components_command("idf.py", tmp_path / "app", tmp_path / "build")
    assert command[command.index("-B") + 1] == str(tmp_path / "build")
    assert command[command.index("--format") + 1] == "json2"
    assert command[command.index("--output-file") + 1] == str(tmp_path / "build" / SIZE_FILE)
    assert "size-components" in command


def test_real_board_knows_the_footprint_of_what_it_flashed(tmp_path: Path) -> None:
    board = Esp32P4Board(tmp_path / "logs", skip_flash=True)
    assert board.firmware_footprint() is None  # nothing flashed in this run: the image on the board is unknown
    shutil.copy(SAMPLE, tmp_path / SIZE_FILE)
    board.build = FirmwareBuild(tmp_path, "esp32p4", (), (), True, {}, None)
    footprint = board.firmware_footprint()
    assert footprint is not None
    assert footprint.stack_archives == STACK
