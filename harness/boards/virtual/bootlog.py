"""ESP32-P4 boot output as the ROM, the 2nd-stage bootloader and ESP-IDF's app start-up print it."""

from __future__ import annotations

from dataclasses import dataclass

ROM_VERSION = "esp32p4-eco2-20240710"

# ESP32-P4 ROM reset causes (soc/reset_reasons.h) as the ROM banner names them.
RESET_REASONS: dict[int, str] = {
    0x01: "POWERON",
    0x03: "SW_SYS_RESET",
    0x05: "PMU_SYS_PWR_DOWN_RESET",
    0x07: "HP_SYS_HP_WDT_RESET",
    0x09: "HP_SYS_LP_WDT_RESET",
    0x0B: "HP_CORE_HP_WDT_RESET",
    0x0C: "SW_CPU_RESET",
    0x0D: "HP_CORE_LP_WDT_RESET",
    0x0F: "BROWN_OUT_RESET",
    0x10: "LP_WDT_SYS_RESET",
    0x12: "SUPER_WDT_RESET",
}
POWERON = 0x01
SW_CPU_RESET = 0x0C
BOOT_SPI_FAST_FLASH = 0x30F
BOOT_DOWNLOAD = 0x307

LEVEL_COLOURS = {"E": "\x1b[0;31m", "W": "\x1b[0;33m", "I": "\x1b[0;32m"}
COLOUR_RESET = "\x1b[0m"


@dataclass(frozen=True)
class AppDescriptor:
    """The fields of esp_app_desc_t the boot log prints."""

    project_name: str
    version: str
    idf_version: str
    elf_sha256: str
    compile_time: str = "Nov 21 2026 10:00:00"


def log_line(level: str, ms: int, tag: str, message: str, colour: bool = True) -> str:
    """One ESP-IDF log line, coloured as CONFIG_LOG_COLORS prints it."""
    text = f"{level} ({ms}) {tag}: {message}"
    if colour and level in LEVEL_COLOURS:
        return f"{LEVEL_COLOURS[level]}{text}{COLOUR_RESET}"
    return text


def rom_banner(reset_code: int, boot_mode: int = BOOT_SPI_FAST_FLASH) -> list[str]:
    """What the mask ROM prints after a reset."""
    reason = RESET_REASONS.get(reset_code, "UNKNOWN")
    mode = "SPI_FAST_FLASH_BOOT" if boot_mode == BOOT_SPI_FAST_FLASH else "DOWNLOAD(USB/UART0/SPI)"
    lines = [
        f"ESP-ROM:{ROM_VERSION}",
        "Build:Jul 10 2024",
        f"rst:0x{reset_code:x} ({reason}),boot:0x{boot_mode:x} ({mode})",
    ]
    if boot_mode == BOOT_DOWNLOAD:
        lines.append("waiting for download")
    else:
        lines += [
            "SPI mode:DIO, clock div:1",
            "load:0x4ff33ce0,len:0x164c",
            "load:0x4ff29ed0,len:0xdb4",
            "load:0x4ff2cbd0,len:0x3364",
            "entry 0x4ff29eda",
        ]
    return lines


def bootloader_lines(ms: int, idf_version: str, chip_rev: str) -> list[str]:
    """The 2nd-stage bootloader's lines up to handing over to the app at 0x10000."""
    messages = [
        f"ESP-IDF {idf_version} 2nd stage bootloader",
        "compile time Nov 21 2026 10:00:00",
        "Multicore bootloader",
        f"chip revision: {chip_rev}",
        "efuse block revision: v0.3",
        "Enabling RNG early entropy source...",
        "Partition Table:",
        "## Label            Usage          Type ST Offset   Length",
        " 0 nvs              WiFi data        01 02 00009000 00006000",
        " 1 phy_init         RF data          01 01 0000f000 00001000",
        " 2 factory          factory app      00 00 00010000 00200000",
        "End of partition table",
        "Loaded app from partition at offset 0x10000",
        "Disabling RNG early entropy source...",
    ]
    lines = [log_line("I", ms, "boot", message) for message in messages[:5]]
    lines += [
        log_line("I", ms, "boot.esp32p4", message)
        for message in ("SPI Speed      : 80MHz", "SPI Mode       : DIO", "SPI Flash Size : 16MB")
    ]
    return lines + [log_line("I", ms, "boot", message) for message in messages[5:]]


def app_start_lines(ms: int, app: AppDescriptor, chip_rev: str) -> list[str]:
    """ESP-IDF's start-up lines up to app_main, with the application information block."""
    lines = [
        ("cpu_start", "Multicore app"),
        ("cpu_start", "Pro cpu start user code"),
        ("cpu_start", "cpu freq: 360000000 Hz"),
        ("app_init", "Application information:"),
        ("app_init", f"Project name:     {app.project_name}"),
        ("app_init", f"App version:      {app.version}"),
        ("app_init", f"Compile time:     {app.compile_time}"),
        ("app_init", f"ELF file SHA256:  {app.elf_sha256[:16]}"),
        ("app_init", f"ESP-IDF:          {app.idf_version}"),
        ("efuse_init", "Min chip rev:     v0.1"),
        ("efuse_init", "Max chip rev:     v1.99"),
        ("efuse_init", f"Chip rev:         {chip_rev}"),
        ("heap_init", "Initializing. RAM available for dynamic allocation:"),
        ("heap_init", "At 4FF14E40 len 000261C0 (152 KiB): RAM"),
        ("heap_init", "At 4FF3AFC0 len 00004BF0 (18 KiB): RAM"),
        ("spi_flash", "detected chip: generic"),
        ("spi_flash", "flash io: dio"),
        ("main_task", "Started on CPU0"),
        ("main_task", "Calling app_main()"),
    ]
    return [log_line("I", ms, tag, message) for tag, message in lines]
