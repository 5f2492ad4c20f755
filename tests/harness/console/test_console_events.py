"""Parser tests: every event kind, RISC-V and Xtensa layouts, colour codes, prompts, CR/LF, truncation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.console.events import Event, LogParser, parse_bytes

SAMPLES = Path(__file__).parent / "samples"


def typed(data: bytes) -> list[Event]:
    return [event for event in parse_bytes(data) if event.kind != "log"]


def sample(name: str) -> list[Event]:
    return typed((SAMPLES / name).read_bytes())


def find(events: list[Event], kind: str, nth: int = 0) -> Event:
    matching = [event for event in events if event.kind == kind]
    assert len(matching) > nth, f"no {kind} #{nth} in {[e.kind for e in events]}"
    return matching[nth]


def assert_fields(event: Event, expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        assert event.fields.get(name) == value, f"{event.kind}.{name}: {event.fields.get(name)!r} != {value!r}"


# (sample, kind, nth occurrence, lineno, expected fields) -- one row per kind and layout.
CASES = [
    ("p4_boot.log", "boot", 0, 1, {"rom": "esp32p4-eco2-20240710"}),
    ("p4_boot.log", "reset", 0, 3, {"code": 1, "reason": "POWERON", "boot_mode": 0x30F}),
    (
        "p4_boot.log",
        "app_info",
        0,
        13,
        {
            "project": "hil_app",
            "version": "0.3.1",
            "idf_version": "v5.5",
            "elf_sha256": "5b8e4da4121d0f52",
            "chip_revision": "v1.0",
        },
    ),
    ("p4_boot.log", "link_up", 0, 24, {"iface": "eth"}),
    ("p4_boot.log", "got_ip", 0, 27, {"ip": "10.77.0.10", "netmask": "255.255.255.0", "gw": "10.77.0.1"}),
    ("p4_boot.log", "hil_stats", 0, 28, {"rx_frames": 10, "tx_fails": 0, "frame_pool_drops": 0, "iface": "eth"}),
    (
        "p4_illegal_instruction.log",
        "panic",
        0,
        2,
        {
            "reason": "Illegal instruction",
            "core": 0,
            "pc": "0x4ff0a3b6",
            "ra": "0x4ff0a3b2",
            "sp": "0x4ff3c5d0",
            "mcause": "0x00000002",
            "mtval": "0x00000000",
            "elf_sha256": "5b8e4da4121d0f52",
            "backtrace": [],
        },
    ),
    ("p4_illegal_instruction.log", "reboot", 0, 26, {}),
    ("p4_illegal_instruction.log", "reset", 0, 29, {"code": 0xC, "reason": "SW_CPU_RESET", "saved_pc": "0x4ff0a3b6"}),
    (
        "esp32_load_prohibited.log",
        "panic",
        0,
        2,
        {
            "reason": "LoadProhibited",
            "core": 1,
            "pc": "0x400d1234",
            "sp": "0x3ffb1f30",
            "backtrace": ["0x400d1234", "0x400d5675", "0x40085e8d"],
            "elf_sha256": "0123456789abcdef",
        },
    ),
    ("esp32_load_prohibited.log", "boot", 0, 28, {"rom": "ets Jun  8 2016 00:22:57"}),
    ("esp32_load_prohibited.log", "reset", 0, 30, {"code": 0xC, "reason": "SW_CPU_RESET", "boot_mode": 0x13}),
    (
        "c3_error_check.log",
        "abort",
        0,
        6,
        {
            "error": "ESP_ERR_INVALID_STATE",
            "error_code": 0x103,
            "file": "./main/main.c",
            "line": 20,
            "function": "app_main",
            "expression": "gpio_install_isr_service(0)",
            "pc": "0x4037f7ab",
            "core": 0,
            "elf_sha256": "9f4b1c2d3e4f5a6b",
        },
    ),
    ("c3_error_check.log", "reset", 1, 30, {"code": 3, "reason": "RTC_SW_SYS_RST", "saved_pc": "0x40380eae"}),
    (
        "c6_assert.log",
        "assert",
        0,
        2,
        {
            "function": "xQueueSemaphoreTake",
            "file": "queue.c",
            "line": 1709,
            "expression": "pxQueue->uxItemSize == 0",
            "backtrace": ["0x40800a8e", "0x40805c22", "0x4080b8d9"],
        },
    ),
    ("c6_assert.log", "reset", 0, 12, {"code": 0xC, "reason": "SW_CPU", "boot_mode": 0x6C}),
    ("esp32_heap_corrupt.log", "heap_corrupt", 0, 2, {"address": "0x3ffe270a"}),
    (
        "esp32_heap_corrupt.log",
        "assert",
        0,
        3,
        {"expression": "head != NULL", "line": 201, "function": "multi_heap_free"},
    ),
    ("esp32_heap_corrupt.log", "abort", 0, 4, {"pc": "0x400dca43", "core": 0}),
    ("c3_task_wdt.log", "wdt", 0, 2, {"type": "task", "tasks": ["IDLE"]}),
    ("c3_task_wdt.log", "abort", 0, 8, {"pc": "0x40383e4c", "core": 0, "elf_sha256": "77665544332211aa"}),
    (
        "esp32_int_wdt.log",
        "panic",
        0,
        1,
        {"reason": "Interrupt wdt timeout on CPU0", "backtrace": ["0x400d2a59", "0x400d0f8b", "0x40085d6d"]},
    ),
    ("esp32_int_wdt.log", "wdt", 0, 1, {"type": "interrupt", "tasks": [], "core": 0}),
    ("stack_overflow.log", "stack_overflow", 0, 2, {"task": "worker"}),
    ("stack_overflow.log", "stack_overflow", 1, 10, {"task": "sensor"}),
    ("stack_overflow.log", "stack_overflow", 2, 18, {"task": "httpd"}),
    ("stack_overflow.log", "panic", 1, 18, {"reason": "Stack protection fault", "pc": "0x42007a3c"}),
    ("brownout_rust_coredump.log", "brownout", 0, 3, {}),
    ("brownout_rust_coredump.log", "reset", 0, 7, {"code": 0xF, "reason": "RTCWDT_BROWN_OUT_RESET"}),
    (
        "brownout_rust_coredump.log",
        "rust_panic",
        0,
        10,
        {"location": "src/lib.rs:10:5", "message": "index out of bounds: the len is 3 but the index is 7"},
    ),
    (
        "brownout_rust_coredump.log",
        "rust_panic",
        1,
        26,
        {"location": "src/main.rs:42:17", "message": "called `Option::unwrap()` on a `None` value"},
    ),
    ("brownout_rust_coredump.log", "coredump", 0, 17, {"where": "flash"}),
    ("brownout_rust_coredump.log", "coredump", 1, 28, {"where": "uart"}),
    ("link_flap_and_netif.log", "got_ip", 0, 4, {"ip": "192.168.1.50", "gw": "192.168.1.1", "iface": "eth"}),
    ("link_flap_and_netif.log", "got_ip", 1, 9, {"ip": "10.0.0.7", "iface": "sta"}),
    ("link_flap_and_netif.log", "link_down", 0, 5, {"iface": "eth"}),
    ("link_flap_and_netif.log", "link_up", 1, 7, {"iface": "eth"}),
    ("link_flap_and_netif.log", "link_up", 2, 10, {"iface": "sta"}),
    ("link_flap_and_netif.log", "wdt", 0, 11, {"type": "hw"}),
]


@pytest.mark.parametrize(("name", "kind", "nth", "lineno", "fields"), CASES, ids=lambda v: str(v)[:30])
def test_sample_event(name: str, kind: str, nth: int, lineno: int, fields: dict[str, Any]) -> None:
    event = find(sample(name), kind, nth)
    assert event.lineno == lineno
    assert_fields(event, fields)


def test_link_changes_reported_once_per_change() -> None:
    kinds = [e.kind for e in sample("link_flap_and_netif.log") if e.kind.startswith("link")]
    assert kinds == ["link_up", "link_down", "link_up", "link_up"]  # last one is the Wi-Fi station


def test_decoded_monitor_lines_attach_to_backtrace_without_breaking_it() -> None:
    panic = find(sample("esp32_load_prohibited.log"), "panic")
    assert panic.fields["backtrace"] == ["0x400d1234", "0x400d5675", "0x40085e8d"]
    functions = [frame["function"] for frame in panic.fields["decoded"]]
    assert "main_task" in functions
    assert panic.fields["elf_sha256"] == "0123456789abcdef"  # gathered after the decode lines


def test_every_log_line_is_a_log_event_after_its_typed_event() -> None:
    events = parse_bytes(b"I (5) esp_netif_handlers: eth ip: 10.0.0.2, mask: 255.0.0.0, gw: 10.0.0.1\r\n")
    assert [e.kind for e in events] == ["got_ip", "log"]
    assert events[1].to_dict() == {
        "kind": "log",
        "lineno": 1,
        "level": "I",
        "ms": 5,
        "tag": "esp_netif_handlers",
        "msg": "eth ip: 10.0.0.2, mask: 255.0.0.0, gw: 10.0.0.1",
    }


@pytest.mark.parametrize(
    "line",
    [
        b"\x1b[0;31mE (123) app: boom\x1b[0m\r\n",
        "\u241b[0;31mE (123) app: boom\u241b[0m\r\n".encode(),
        b"hil> E (123) app: boom\r\n",
        b"hil> hil> \x1b[0;31mE (123) app: boom\x1b[0m\n",
        b"E (123) app: boom\r\r\n",
    ],
    ids=["esc", "visible-esc", "prompt", "prompt-twice-colour", "double-cr"],
)
def test_colour_prompt_and_line_endings(line: bytes) -> None:
    (event,) = parse_bytes(line)
    assert event.to_dict() == {"kind": "log", "lineno": 1, "level": "E", "ms": 123, "tag": "app", "msg": "boom"}


def test_crlf_mix_counts_lines_by_newline() -> None:
    data = b"I (1) a: one\r\nI (2) a: two\nI (3) a: three\r\n\r\nRebooting...\n"
    events = parse_bytes(data)
    assert [(e.kind, e.lineno) for e in events] == [("log", 1), ("log", 2), ("log", 3), ("reboot", 5)]


def test_colour_codes_inside_a_panic_dump() -> None:
    text = (SAMPLES / "p4_illegal_instruction.log").read_text()
    coloured = "".join(f"\x1b[0;31m{line}\x1b[0m\r\n" for line in text.splitlines())
    plain = typed(text.encode())
    assert [e.to_dict() for e in typed(coloured.encode())] == [e.to_dict() for e in plain]


def test_garbage_bytes_before_a_boot_banner() -> None:
    data = (
        b"\xff\xfe\x00\x80garbage\x1b[\x1b\r\n\xc3ESP-ROM:esp32c3-api1-20210207\r\nrst:0x1 (POWERON),boot:0xc (SPI)\r\n"
    )
    events = typed(data)
    assert [e.kind for e in events] == ["boot", "reset"]
    assert events[0].fields["rom"] == "esp32c3-api1-20210207"


def test_reset_without_banner_still_starts_a_boot() -> None:
    events = typed(b"I (1) x: y\nrst:0x7 (HP_SYS_HP_WDT_RESET),boot:0x30f (SPI_FAST_FLASH_BOOT)\n")
    assert [(e.kind, e.lineno) for e in events] == [("boot", 2), ("reset", 2)]
    assert "rom" not in events[0].fields


def test_truncated_dump_still_yields_the_event() -> None:
    lines = (SAMPLES / "p4_illegal_instruction.log").read_bytes().splitlines(keepends=True)
    cut = b"".join(lines[:8]) + lines[8][:20]  # in the middle of the register dump
    panic = find(typed(cut), "panic")
    assert_fields(panic, {"reason": "Illegal instruction", "pc": "0x4ff0a3b6", "ra": "0x4ff0a3b2"})
    assert "elf_sha256" not in panic.fields


def test_error_check_without_abort_line_keeps_what_was_printed() -> None:
    data = b'ESP_ERROR_CHECK failed: esp_err_t 0x107 (ESP_ERR_TIMEOUT) at 0x42001234\nfile: "m.c" line 7\n'
    (event,) = typed(data)
    assert event.to_dict() == {
        "kind": "abort",
        "lineno": 1,
        "error_code": 0x107,
        "error": "ESP_ERR_TIMEOUT",
        "pc": "0x42001234",
        "file": "m.c",
        "line": 7,
    }


def test_incremental_feed_returns_events_when_complete() -> None:
    parser = LogParser()
    assert parser.feed(b"Guru Meditation Error: Core  0 panic'ed (Load access fault). Exc") == []
    assert parser.feed(b"eption was unhandled.\r\nMEPC    : 0x40001234  RA      : 0x40005678\r\n") == []
    events = parser.feed(b"\r\nRebooting...\r\n")
    assert [e.kind for e in events] == ["panic", "reboot"]
    assert events[0].fields["pc"] == "0x40001234"
    assert parser.finish() == []


def test_old_rust_and_esp_backtrace_panics() -> None:
    events = typed(
        b"I (1) x: y\n!! A panic occured in 'src/main.rs', at line 7, column 9:\nboom\n"
        b"thread 'main' panicked at 'bad', src/lib.rs:3:1\n"
    )
    # the esp-backtrace line says "occured" (sic) in some versions and "occurred" in others
    assert [e.kind for e in events] == ["rust_panic", "rust_panic"]
    assert events[0].fields == {"location": "src/main.rs:7:9", "message": "boom"}
    assert events[1].fields == {"location": "src/lib.rs:3:1", "message": "bad"}
    events = typed(b"panic occurred in 'src/main.rs', at line 7, column 9:\nboom\n")
    assert events[0].fields == {"location": "src/main.rs:7:9", "message": "boom"}
