"""The real-board path without a board: port choice, esptool failure texts, boot diagnoses, and the flash
path driven through the real esptool against the virtual board's ROM loader."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import serial
from serial.tools.list_ports_common import ListPortInfo

from harness.boards.esp32p4 import (
    REV_CONFIG,
    Esp32P4Board,
    FirmwareBuild,
    board_from_options,
    boot_problem,
    busy_port_message,
    explain_esptool_failure,
    parse_chip_rev,
    port_holders,
    pulse_reset,
    resolve_port,
    truthy,
)
from harness.config import LabConfig
from harness.errors import BoardError, ConfigError

VIRTUAL_HELPERS = Path(__file__).resolve().parent.parent / "virtual"
sys.path.insert(0, str(VIRTUAL_HELPERS))

from appimage import build_app_image, build_bootloader_image, build_partition_table, have_cross_compiler  # noqa: E402
from romboard import RomBoard  # noqa: E402


def port_info(
    device: str, vid: int | None = None, pid: int | None = None, serial_number: str | None = None
) -> ListPortInfo:
    """A ListPortInfo as pyserial builds it for a USB device (data, not a mock)."""
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number = vid, pid, serial_number
    info.description = "USB Single Serial" if vid else "n/a"
    return info


CH343 = port_info("/dev/ttyACM0", 0x1A86, 0x55D3, "5A7B123456")
CH340 = port_info("/dev/ttyUSB1", 0x1A86, 0x7523)
FTDI = port_info("/dev/ttyUSB0", 0x0403, 0x6001, "FT123")
BUILTIN = port_info("/dev/ttyS0")


# --- port choice -------------------------------------------------------------------------------------------


def test_the_port_comes_from_the_option_then_espport_then_the_board_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = LabConfig.model_validate({"boards": {"desk": {"port": "/dev/ttyACM7"}}})

    def port(option: str | None) -> str | None:
        return board_from_options(SimpleNamespace(port=option), config, tmp_path).requested_port

    monkeypatch.delenv("ESPPORT", raising=False)
    assert port(None) == "/dev/ttyACM7"
    monkeypatch.setenv("ESPPORT", "rfc2217://lab:4000")
    assert port(None) == "rfc2217://lab:4000", "ESP-IDF's CI names the port in $ESPPORT"
    assert port("/dev/ttyACM0") == "/dev/ttyACM0"


def test_single_ch343_is_chosen_among_other_ports() -> None:
    assert resolve_port(None, ports=[BUILTIN, FTDI, CH343]) == "/dev/ttyACM0"


def test_ch343_is_preferred_listing_order_aside() -> None:
    with pytest.raises(BoardError, match="several possible boards") as err:
        resolve_port(None, ports=[CH340, CH343])
    text = str(err.value)
    assert text.index("/dev/ttyACM0") < text.index("/dev/ttyUSB1")
    assert "1a86:55d3 serial 5A7B123456, WCH CH343" in text and "--port-mac" in text


def test_no_bridge_lists_what_was_seen() -> None:
    with pytest.raises(BoardError) as err:
        resolve_port(None, ports=[BUILTIN, FTDI])
    text = str(err.value)
    assert "no ESP32-P4 board found" in text
    assert "/dev/ttyUSB0 (0403:6001 serial FT123" in text and "/dev/ttyS0 (no USB id" in text
    assert "--port" in text and "rfc2217://" in text


def test_no_ports_at_all() -> None:
    with pytest.raises(BoardError, match="no serial ports at all"):
        resolve_port(None, ports=[])


def test_explicit_port_and_rfc2217_are_taken_as_given() -> None:
    assert resolve_port("/dev/ttyUSB7", ports=[]) == "/dev/ttyUSB7"
    assert resolve_port("rfc2217://lab-pc:4000", port_mac="60:55:f9:f0:00:01", ports=[]) == "rfc2217://lab-pc:4000"


def test_port_mac_probes_each_candidate() -> None:
    macs = {"/dev/ttyACM0": "60:55:f9:f0:00:02", "/dev/ttyUSB1": "60:55:f9:f0:00:01"}
    probed: list[str] = []

    def read_mac(port: str) -> str:
        probed.append(port)
        return macs[port]

    assert resolve_port(None, "60-55-F9-F0-00-01", ports=[CH343, CH340], read_mac=read_mac) == "/dev/ttyUSB1"
    assert probed == ["/dev/ttyACM0", "/dev/ttyUSB1"]
    with pytest.raises(
        BoardError, match=r"no serial port has a chip with MAC 60:55:f9:f0:00:09.*MAC 60:55:f9:f0:00:02"
    ):
        resolve_port(None, "60:55:f9:f0:00:09", ports=[CH343, CH340], read_mac=read_mac)


def test_explicit_port_with_wrong_mac_is_refused() -> None:
    with pytest.raises(BoardError, match="has MAC 60:55:f9:f0:00:02, not 60:55:f9:f0:00:01"):
        resolve_port("/dev/ttyACM0", "60:55:f9:f0:00:01", read_mac=lambda port: "60:55:f9:f0:00:02")


def test_bad_mac_spelling() -> None:
    with pytest.raises(ConfigError, match="six hex bytes"):
        resolve_port(None, "60:55:f9", ports=[CH343])


@pytest.mark.parametrize(("text", "value"), [("v1.0", 100), ("3.1", 301), ("v3.12", 312)])
def test_chip_rev_spellings(text: str, value: int) -> None:
    assert parse_chip_rev(text) == value


def test_bad_chip_rev() -> None:
    with pytest.raises(ConfigError, match=r"v<major>\.<minor>"):
        Esp32P4Board(Path("/tmp"), chip_rev="rev3")


def test_embedded_style_booleans() -> None:
    assert truthy("y") and truthy("True") and truthy(True)
    assert not truthy(None) and not truthy("n")


# --- failure texts ------------------------------------------------------------------------------------------


def test_revision_refusal_is_explained() -> None:
    output = (
        "Connected to ESP32-P4 on /dev/ttyACM0:\nChip type: ESP32-P4 (revision v1.0)\n"
        "A fatal error occurred: bootloader.bin requires chip revision v3.1 or higher (this chip is revision v1.0). "
        "Use --force to flash anyway.\n"
    )
    text = explain_esptool_failure(output, "/dev/ttyACM0")
    assert text.startswith(
        "the build does not fit this chip: bootloader.bin requires chip revision v3.1 or higher "
        "(this chip is revision v1.0)"
    )
    assert f"{REV_CONFIG}=y" in text and "idf.py build" in text


def test_connect_failure_is_explained() -> None:
    text = explain_esptool_failure(
        "A fatal error occurred: Failed to connect to ESP32-P4: No serial data received.", "/dev/x"
    )
    assert "could not reach the ROM loader on /dev/x" in text and "hold BOOT" in text


def test_permission_denied_is_explained() -> None:
    text = explain_esptool_failure("could not open port /dev/ttyACM0: [Errno 13] Permission denied", "/dev/ttyACM0")
    assert "dialout" in text


def test_usage_error_is_unboxed() -> None:
    output = (
        " Try 'python -m esptool write-flash -h' for help\n"
        "\u256d\u2500 Error \u2500\u2500\u256e\n"
        "\u2502 Invalid value for '<address> <filename>...': Detected overlap at address: 0x10000 for file: \u2502\n"
        "\u2502 /b/app.bin.  \u2502\n\u2570\u2500\u2500\u256f\n"
    )
    text = explain_esptool_failure(output, "/dev/ttyACM0")
    assert text == (
        "esptool failed on /dev/ttyACM0: Invalid value for '<address> <filename>...': Detected overlap at address: "
        "0x10000 for file: /b/app.bin."
    )


def test_wrong_chip_is_explained() -> None:
    text = explain_esptool_failure(
        "A fatal error occurred: This chip is ESP32-C3, not ESP32-P4. Wrong chip argument?", "p"
    )
    assert "is ESP32-C3, not an ESP32-P4" in text


def test_busy_port_names_the_holder(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        device = os.ttyname(slave)
        # This process holds the pty: /proc shows it, and the message would name any other holder the same way.
        assert os.getpid() in [pid for pid, _cmd in port_holders(device)]
        text = explain_esptool_failure(f"Could not exclusively lock port {device}: [Errno 11]", device)
        assert text == busy_port_message(device)
        assert f"serial port {device} is busy" in text and "idf.py monitor" in text
    finally:
        os.close(master)
        os.close(slave)


def test_console_open_on_a_held_port_says_busy(tmp_path: Path) -> None:
    master, slave = os.openpty()
    device = os.ttyname(slave)
    holder = serial.Serial(device, exclusive=True)
    board = Esp32P4Board(tmp_path, port=device, skip_flash=True)
    try:
        with pytest.raises(BoardError, match=f"serial port {device} is busy"):
            board.start(wait_online=False)
    finally:
        board.close()
        holder.close()
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize(
    "line",
    [
        "rst:0x1 (POWERON),boot:0x307 (DOWNLOAD(USB/UART0/SPI))",
        "waiting for download",
    ],
)
def test_download_mode_is_diagnosed(line: str) -> None:
    problem = boot_problem(["ESP-ROM:esp32p4-eco2-20240710", "Build:Jul 10 2024", line])
    assert problem is not None and "stuck in download mode" in problem and "Release the BOOT button" in problem


def test_bootloader_revision_refusal_is_diagnosed() -> None:
    problem = boot_problem(["E (123) boot_comm: Image requires chip rev >= v3.1, but chip is v1.0"])
    assert problem is not None and REV_CONFIG in problem


def test_normal_boot_has_no_problem() -> None:
    assert boot_problem(["rst:0x1 (POWERON),boot:0x30f (SPI_FAST_FLASH_BOOT)", "HIL_HELLO proto=1"]) is None


def test_reset_pulse_on_a_pty_reports_no_modem_lines(tmp_path: Path) -> None:
    master, slave = os.openpty()
    link = serial.Serial(os.ttyname(slave))
    try:
        with pytest.raises(OSError):
            pulse_reset(link)  # a pty has no DTR/RTS: the kernel says ENOTTY
    finally:
        link.close()
        os.close(master)
        os.close(slave)


# --- the build directory --------------------------------------------------------------------------------------


def test_missing_build_dir_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(BoardError, match=r"no build directory .*hil build.*idf.py"):
        FirmwareBuild.load(tmp_path, "build")


def test_build_without_flasher_args(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    with pytest.raises(BoardError, match=r"has no flasher_args\.json.*hil build"):
        FirmwareBuild.load(tmp_path, "build")


def _fake_build(build: Path, files: dict[str, Path], *, less_v3: bool | None = None, chip: str = "esp32p4") -> Path:
    build.mkdir(parents=True, exist_ok=True)
    flash_files = {}
    for offset, source in files.items():
        target = build / source.name
        target.write_bytes(source.read_bytes())
        flash_files[offset] = source.name
    (build / "flasher_args.json").write_text(
        json.dumps(
            {
                "write_flash_args": ["--flash-mode", "dio", "--flash-size", "16MB", "--flash-freq", "80m"],
                "flash_settings": {"flash_mode": "dio", "flash_size": "16MB", "flash_freq": "80m"},
                "flash_files": flash_files,
                "extra_esptool_args": {"after": "hard_reset", "before": "default_reset", "stub": True, "chip": chip},
            }
        )
    )
    if less_v3 is not None:
        (build / "config").mkdir(exist_ok=True)
        config = {"IDF_TARGET": chip, "ESP32P4_SELECTS_REV_LESS_V3": less_v3}
        (build / "config" / "sdkconfig.json").write_text(json.dumps(config))
    return build


def test_build_revision_is_checked_before_flashing(tmp_path: Path) -> None:
    blob = tmp_path / "app.bin"
    blob.write_bytes(b"\xe9" + bytes(63))
    build = FirmwareBuild.load(tmp_path, _fake_build(tmp_path / "b", {"0x10000": blob}, less_v3=True))
    build.check_chip("v1.0")
    with pytest.raises(BoardError, match=f"{REV_CONFIG}=y .* but the board is v3.1"):
        build.check_chip("v3.1")
    build3 = FirmwareBuild.load(tmp_path, _fake_build(tmp_path / "b3", {"0x10000": blob}, less_v3=False))
    with pytest.raises(BoardError, match=r"for chip revision v3\.x but the board is v1\.0"):
        build3.check_chip("v1.0")


def test_build_for_another_chip_is_refused(tmp_path: Path) -> None:
    blob = tmp_path / "app.bin"
    blob.write_bytes(bytes(64))
    build = FirmwareBuild.load(tmp_path, _fake_build(tmp_path / "b", {"0x10000": blob}, chip="esp32c3"))
    with pytest.raises(BoardError, match="is for esp32c3, not esp32p4"):
        build.check_chip(None)


def test_esptool_command_line(tmp_path: Path) -> None:
    blob = tmp_path / "app.bin"
    blob.write_bytes(bytes(64))
    build = FirmwareBuild.load(tmp_path, _fake_build(tmp_path / "b", {"0x10000": blob, "0x2000": blob}))
    args = build.esptool_args("/dev/ttyACM0", 460800)
    assert args[:10] == [
        "--chip",
        "esp32p4",
        "--port",
        "/dev/ttyACM0",
        "--baud",
        "460800",
        "--before",
        "default-reset",
        "--after",
        "no-reset",
    ]
    assert args[10] == "write-flash"
    assert args[-4:] == ["0x2000", str(tmp_path / "b" / "app.bin"), "0x10000", str(tmp_path / "b" / "app.bin")]


# --- the flash path against the virtual board's ROM loader (real esptool) ---------------------------------------

needs_cross = pytest.mark.skipif(not have_cross_compiler(), reason="needs riscv64-linux-gnu-gcc to build test images")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not have_cross_compiler():
        pytest.skip("needs riscv64-linux-gnu-gcc to build test images")
    work = tmp_path_factory.mktemp("images")
    return {
        "bootloader": build_bootloader_image(work),
        "table": build_partition_table(work / "partition-table.bin"),
        "app": build_app_image(work).image,
        "bootloader_v3": build_app_image(work, min_rev_full=301, max_rev_full=399, name="bootloader_v3").image,
    }


@needs_cross
def test_board_flashes_a_build_through_esptool(images: dict[str, Path], tmp_path: Path) -> None:
    build = _fake_build(
        tmp_path / "build", {"0x2000": images["bootloader"], "0x8000": images["table"], "0x10000": images["app"]}
    )
    with RomBoard(tmp_path / "flash") as rom:
        board = Esp32P4Board(tmp_path / "logs", port=rom.port, build_dir=build, before="no-reset", esptool_baud=460800)
        output = board.flash()
        readback = rom.esptool("read-flash", "0x10000", str(images["app"].stat().st_size), str(tmp_path / "back.bin"))
    assert output.count("Hash of data verified") == 3
    assert (tmp_path / "logs" / "esptool-flash.log").read_text() == output
    assert readback.returncode == 0, readback.stdout + readback.stderr
    assert (tmp_path / "back.bin").read_bytes() == images["app"].read_bytes()


@needs_cross
def test_wrong_revision_build_is_explained(images: dict[str, Path], tmp_path: Path) -> None:
    build = _fake_build(tmp_path / "build", {"0x2000": images["bootloader_v3"]})
    with RomBoard(tmp_path / "flash", chip_rev="v1.0") as rom:
        board = Esp32P4Board(tmp_path / "logs", port=rom.port, build_dir=build, before="no-reset")
        with pytest.raises(BoardError) as err:
            board.flash()
    text = str(err.value)
    assert "bootloader_v3.bin' requires chip revision in range v3.1 - v3.99 (this chip is revision v1.0)" in text
    assert REV_CONFIG in text


@pytest.mark.skipif(not os.environ.get("HIL_REAL_BOARD"), reason="needs a physical ESP32-P4 (set HIL_REAL_BOARD=1)")
def test_physical_board_reports_its_mac() -> None:
    from harness.boards.esp32p4 import esptool_read_mac

    assert len(esptool_read_mac(resolve_port(os.environ.get("ESPPORT")))) == 17


def test_build_directory_is_read_without_pytest_embedded(tmp_path: Path) -> None:
    blob = tmp_path / "app.bin"
    blob.write_bytes(bytes(64))
    build = _fake_build(tmp_path / "b", {"0x10000": blob, "0x2000": blob}, less_v3=True, chip="")
    (build / "hil_app.elf").write_bytes(b"\x7fELF")
    (build / "project_description.json").write_text(json.dumps({"target": "esp32p4", "app_elf": "hil_app.elf"}))
    loaded = FirmwareBuild.load(tmp_path, build)
    assert loaded.chip == "esp32p4", "the target comes from project_description.json when flasher_args has none"
    assert loaded.elf == build / "hil_app.elf"
    assert [offset for offset, _ in loaded.flash_files] == [0x2000, 0x10000]
    assert loaded.sdkconfig["ESP32P4_SELECTS_REV_LESS_V3"] is True
    (build / "app.bin").unlink()
    with pytest.raises(BoardError, match=r"names files that are not there"):
        FirmwareBuild.load(tmp_path, build)
