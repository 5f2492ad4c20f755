"""Crash decoding against a real RV32 ELF built here with Debian's RISC-V cross compiler.

The panic capture is what an ESP32-P4 prints for this ELF: the register dump and the stack memory are laid
out from the compiled code itself (each function's frame size and where its prologue saved ra and s0, read
from objdump), so gdb and addr2line see the stack the crash would have left.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.console.decode import (
    BacktraceDecoder,
    coredump_decoder_available,
    coredump_partition,
    file_sha256,
    find_gdb,
    panic_text,
)
from harness.console.events import parse_bytes

GCC = shutil.which("riscv64-linux-gnu-gcc")
OBJDUMP = shutil.which("riscv64-linux-gnu-objdump")
SOURCE = """\
volatile int sink;
__attribute__((noinline)) void crash_now(int x) { sink = x; __asm__ volatile("unimp"); }
__attribute__((noinline)) void level_two(int x) { crash_now(x + 1); sink++; }
__attribute__((noinline)) void level_one(int x) { level_two(x * 2); sink++; }
void app_main(void) { level_one(3); sink++; }
"""
CHAIN = ("crash_now", "level_two", "level_one", "app_main")
SP_AT_CRASH = 0x4FF3C500
pytestmark = pytest.mark.skipif(
    GCC is None or OBJDUMP is None, reason="needs riscv64-linux-gnu-gcc (apt install gcc-riscv64-linux-gnu)"
)
needs_gdb = pytest.mark.skipif(find_gdb() is None, reason="needs a RISC-V gdb (apt install gdb-multiarch)")


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("elf")
    (work / "app.c").write_text(SOURCE)
    command = [
        str(GCC), "-march=rv32imac", "-mabi=ilp32", "-g", "-O0", "-fno-omit-frame-pointer", "-nostdlib",
        "-ffreestanding", "-Wl,-e,app_main", "-Wl,-Ttext=0x40000000", "-o", str(work / "app.elf"),
        str(work / "app.c"),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=60)
    return work / "app.elf"


def _functions(elf: Path) -> dict[str, list[tuple[int, str]]]:
    """Each function's instructions as (address, text), from objdump."""
    out = subprocess.run([str(OBJDUMP), "-d", str(elf)], capture_output=True, text=True, check=True, timeout=30)
    functions: dict[str, list[tuple[int, str]]] = {}
    current = None
    for line in out.stdout.splitlines():
        header = re.match(r"^([0-9a-f]+) <(\w+)>:$", line)
        if header:
            current = functions.setdefault(header[2], [])
            continue
        instruction = re.match(r"^\s*([0-9a-f]+):\s+[0-9a-f]+\s+(.*)$", line)
        if instruction and current is not None:
            current.append((int(instruction[1], 16), instruction[2]))
    return functions


@dataclass(frozen=True)
class CrashState:
    """The CPU and stack at the `unimp` in crash_now, called by level_two, level_one and app_main."""

    pc: int
    ra: int
    sp: int
    s0: int
    memory: dict[int, int]
    stack_end: int

    def stack_bytes(self) -> bytes:
        return b"".join(struct.pack("<I", self.memory.get(a, 0)) for a in range(self.sp, self.stack_end, 4))


def crash_state(elf: Path) -> CrashState:
    """Lay out the stack from the compiled code: each frame's size and where its prologue saved ra and s0."""
    functions = _functions(elf)
    frames = []  # (frame size, ra offset, s0 offset) per function of the chain, innermost first
    for name in CHAIN:
        code = functions[name]
        size = -int(re.search(r"add\s+sp,sp,(-\d+)", code[0][1])[1])
        saved = {}
        for _, text in code[:4]:
            store = re.search(r"sw\s+(ra|s0),(\d+)\(sp\)", text)
            if store:
                saved[store[1]] = int(store[2])
        frames.append((size, saved.get("ra"), saved.get("s0")))
    pc = next(address for address, text in functions["crash_now"] if text.startswith("unimp"))

    def return_address(caller: str, callee: str) -> int:
        code = functions[caller]
        index = next(i for i, (_, text) in enumerate(code) if re.search(rf"\bjal\b.*<{callee}>", text))
        return code[index + 1][0]

    memory: dict[int, int] = {}
    sp = SP_AT_CRASH
    sps = []
    for size, _, _ in frames:
        sps.append(sp)
        sp += size
    for i, (_, ra_offset, s0_offset) in enumerate(frames):
        caller = CHAIN[i + 1] if i + 1 < len(CHAIN) else None
        if ra_offset is not None:
            memory[sps[i] + ra_offset] = return_address(caller, CHAIN[i]) if caller else 0
        if s0_offset is not None:  # the caller's frame pointer: the top of the caller's frame
            memory[sps[i] + s0_offset] = sps[i + 1] + frames[i + 1][0] if caller else 0
    ra = return_address("level_two", "crash_now")
    return CrashState(pc, ra, SP_AT_CRASH, SP_AT_CRASH + frames[0][0], memory, sp)


def p4_panic_capture(elf: Path, sha: str | None = None) -> bytes:
    """The console output of an ESP32-P4 whose CPU hit the `unimp` in crash_now, called by app_main."""
    state = crash_state(elf)
    pc, ra, s0 = state.pc, state.ra, state.s0
    stack = [
        f"{base:08x}: " + " ".join(f"0x{state.memory.get(base + 4 * k, 0):08x}" for k in range(8))
        for base in range(state.sp, state.stack_end, 32)
    ]
    text = f"""I (10512) hil: HIL_RESULT {{"proto":1,"cmd":"crash","ok":true}}
Guru Meditation Error: Core  0 panic'ed (Illegal instruction). Exception was unhandled.

Core  0 register dump:
MEPC    : 0x{pc:08x}  RA      : 0x{ra:08x}  SP      : 0x{SP_AT_CRASH:08x}  GP      : 0x4ff16b00
TP      : 0x4ff3c7a0  T0      : 0x4fc0a9f8  T1      : 0x4ff3c57c  T2      : 0x00000000
S0/FP   : 0x{s0:08x}  S1      : 0x00000001  A0      : 0x0000000d  A1      : 0x4ff3c5e0
A2      : 0x00000000  A3      : 0x00000000  A4      : 0x0000000d  A5      : 0x40002004
A6      : 0x00000000  A7      : 0x0000000a  S2      : 0x00000000  S3      : 0x00000000
S4      : 0x00000000  S5      : 0x00000000  S6      : 0x00000000  S7      : 0x00000000
S8      : 0x00000000  S9      : 0x00000000  S10     : 0x00000000  S11     : 0x00000000
T3      : 0x00000000  T4      : 0x00000000  T5      : 0x00000000  T6      : 0x00000000
MSTATUS : 0x00001881  MTVEC   : 0x4ff00003  MCAUSE  : 0x00000002  MTVAL   : 0x00000000
MHARTID : 0x00000000

Stack memory:
{chr(10).join(stack)}



ELF file SHA256: {sha or file_sha256(elf)[:16]}

Rebooting...
ESP-ROM:esp32p4-eco2-20240710
Build:Jul 10 2024
rst:0xc (SW_CPU_RESET),boot:0x30f (SPI_FAST_FLASH_BOOT)
Core0 Saved PC:0x{pc:08x}
"""
    return text.replace("\n", "\r\n").encode()


def _panic(elf: Path, sha: str | None = None):
    return next(e for e in parse_bytes(p4_panic_capture(elf, sha)) if e.kind == "panic")


def test_the_capture_parses_to_a_panic_with_its_stack(elf: Path) -> None:
    panic = _panic(elf)
    assert panic.fields["reason"] == "Illegal instruction" and panic.fields["backtrace"] == []
    assert len(panic.fields["stack_memory"]) >= 3 and panic.fields["registers"]["S0/FP"]
    assert "Stack memory:" in panic_text(panic.fields)


@needs_gdb
def test_gdb_unwinds_a_p4_panic_to_every_frame(elf: Path) -> None:
    result = BacktraceDecoder(elf).decode_event(_panic(elf))
    assert result.decoded and result.method == "gdb", result
    assert [frame.function for frame in result.frames] == list(CHAIN)
    assert all(frame.file.endswith("app.c") and frame.line for frame in result.frames)
    assert result.frames[0].address == _panic(elf).fields["pc"]


def test_without_gdb_addr2line_finds_the_frames_in_the_stack_dump(elf: Path) -> None:
    result = BacktraceDecoder(elf, gdb=None).decode_event(_panic(elf))
    assert result.decoded and result.method == "addr2line"
    assert [frame.function for frame in result.frames] == list(CHAIN)


def test_log_parse_decodes_a_p4_capture_given_the_elf(elf: Path, tmp_path: Path) -> None:
    capture = tmp_path / "p4_panic.log"
    capture.write_bytes(p4_panic_capture(elf))
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "log", "parse", str(capture), "--elf", str(elf), "--json", "--no-log"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    panic = next(json.loads(line) for line in done.stdout.splitlines() if '"panic"' in line)
    functions = [frame["function"] for frame in panic["decoded"]]
    assert len(functions) >= 3 and functions[:3] == ["crash_now", "level_two", "level_one"]
    assert panic["decoded_by"] == ("gdb" if find_gdb() else "addr2line")


def test_sha_mismatch_is_reported_not_decoded(elf: Path) -> None:
    result = BacktraceDecoder(elf).decode_event(_panic(elf, sha="00000000deadbeef"))
    assert not result.decoded
    assert "ELF mismatch" in result.note and "00000000deadbeef" in result.note
    assert result.frames[0].function is None


def test_a_printed_backtrace_is_decoded_address_by_address(elf: Path) -> None:
    functions = _functions(elf)
    level_one = functions["level_one"][0][0]
    log = (
        f"Guru Meditation Error: Core  0 panic'ed (Load access fault). Exception was unhandled.\n"
        f"Backtrace: 0x{level_one:08x}:0x4ff3c000 0x00000004:0x4ff3c020\n"
        f"ELF file SHA256: {file_sha256(elf)[:16]}\n"
    ).encode()
    result = BacktraceDecoder(elf).decode_event(parse_bytes(log)[0])
    assert result.method == "addr2line" and [f.function for f in result.frames] == ["level_one", None]
    assert result.frames[0].line == 4 and str(result.frames[0]).startswith(f"0x{level_one:08x}: level_one at ")


def test_missing_elf_or_decoder_is_said_once(tmp_path: Path, elf: Path) -> None:
    decoder = BacktraceDecoder(None)
    first, second = decoder.decode(["0x42000000"]), decoder.decode(["0x42000004"])
    assert not first.decoded and "no app ELF" in first.note
    assert second.note is None and second.frames[0].address == "0x42000004"
    missing = BacktraceDecoder(tmp_path / "gone.elf").decode(["0x1"])
    assert "not found" in missing.note
    no_tool = BacktraceDecoder(elf, gdb=None)
    no_tool.addr2line = None
    assert "no gdb and no addr2line" in no_tool.decode(["0x1"]).note


def test_coredump_partition_is_found_in_a_partition_table() -> None:
    def entry(kind: int, subtype: int, offset: int, size: int, label: bytes) -> bytes:
        import struct

        return struct.pack("<HBBII16sI", 0x50AA, kind, subtype, offset, size, label, 0)

    table = entry(0, 0, 0x10000, 0x100000, b"factory") + entry(1, 3, 0x110000, 0x10000, b"coredump") + b"\xff" * 32
    assert coredump_partition(table) == (0x110000, 0x10000)
    assert coredump_partition(entry(0, 0, 0x10000, 0x1000, b"app") + b"\xff" * 32) is None


P4_CHIP_ID = 18
ELF_SHA256_V2_2 = 0x0104  # core dump format 1.4: ELF core, SHA256 checksum, header with chip revision


def _note(name: str, kind: int, desc: bytes) -> bytes:
    def pad(data: bytes) -> bytes:
        return data + b"\0" * (-len(data) % 4)

    raw_name = name.encode() + b"\0"
    return struct.pack("<III", len(raw_name), len(desc), kind) + pad(raw_name) + pad(desc)


def p4_core_dump(elf: Path, tmp_path: Path, app_sha256: str | None = None) -> bytes:
    """An ESP-IDF ELF core dump (format 1.4, as ESP-IDF 5 writes it) of the crashed task: its registers
    (NT_PRSTATUS), its stack, and the app ELF's SHA256 (ESP_CORE_DUMP_INFO); base64 as on the UART."""
    from esp_coredump.corefile.elf import ElfFile, ESPCoreDumpElfFile
    from esp_coredump.corefile.riscv import RiscvMethodsMixin

    state = crash_state(elf)
    registers = [0] * 32  # gregset: pc in slot 0, then x1..x31
    registers[0], registers[1], registers[2], registers[8] = state.pc, state.ra, state.sp, state.s0
    version = (P4_CHIP_ID << 16) | ELF_SHA256_V2_2
    tcb = 0x4FF30000
    notes = _note("CORE", 1, RiscvMethodsMixin.build_prstatus_data(tcb, registers))
    notes += _note("ESP_CORE_DUMP_INFO", 8266, struct.pack("<I", version) + (app_sha256 or file_sha256(elf)).encode())
    core = ESPCoreDumpElfFile(e_machine=ESPCoreDumpElfFile.EM_RISCV)
    core.add_segment(tcb, bytes(64), ElfFile.PT_LOAD, 0)
    core.add_segment(state.sp, state.stack_bytes(), ElfFile.PT_LOAD, 0)
    core.add_segment(0, notes, ElfFile.PT_NOTE, 0)
    core.dump(str(tmp_path / "core.elf"))
    body = (tmp_path / "core.elf").read_bytes()
    header = struct.pack("<III", 12 + len(body) + 32, version, 100)
    raw = header + body + hashlib.sha256(header + body).digest()
    text = base64.b64encode(raw).decode()
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76)).encode() + b"\n"


needs_coredump = pytest.mark.skipif(
    find_gdb() is None or not coredump_decoder_available(), reason="needs esp-coredump and gdb-multiarch"
)


@needs_coredump
def test_a_uart_core_dump_is_decoded_with_the_panic(elf: Path, tmp_path: Path) -> None:
    dump = p4_core_dump(elf, tmp_path)
    capture = p4_panic_capture(elf).split(b"Rebooting...")[0] + (
        b"I (3412) esp_core_dump_uart: Press Enter to print core dump to UART...\r\n"
        b"================= CORE DUMP START =================\r\n"
        + dump.replace(b"\n", b"\r\n")
        + b"================= CORE DUMP END =================\r\n"
        b"I (3999) esp_core_dump_uart: Core dump done.\r\nRebooting...\r\n"
    )
    (tmp_path / "uart.log").write_bytes(capture)
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "log", "parse", str(tmp_path / "uart.log"), "--elf", str(elf), "--json"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    coredump = next(e for e in events if e["kind"] == "coredump")
    assert coredump["decoded_by"] == "esp-coredump" and coredump["where"] == "uart"
    assert [f["function"] for f in coredump["decoded"]] == list(CHAIN)
    assert coredump["crash_lineno"] == next(e for e in events if e["kind"] == "panic")["lineno"]


@needs_coredump
def test_hil_log_coredump_decodes_a_file_and_refuses_another_elf(elf: Path, tmp_path: Path) -> None:
    (tmp_path / "good.b64").write_bytes(p4_core_dump(elf, tmp_path))
    command = [sys.executable, "-m", "harness.cli", "log", "coredump", "--elf", str(elf)]
    done = subprocess.run([*command, str(tmp_path / "good.b64")], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "decoded by esp-coredump" in done.stdout and "level_one at " in done.stdout
    raw = base64.b64decode(b"".join((tmp_path / "good.b64").read_bytes().split()))
    (tmp_path / "partition.bin").write_bytes(raw + b"\xff" * 4096)  # as read from the flash partition
    done = subprocess.run([*command, str(tmp_path / "partition.bin")], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and "#3 " in done.stdout, done.stderr
    (tmp_path / "other.b64").write_bytes(p4_core_dump(elf, tmp_path, app_sha256="ab" * 32))
    done = subprocess.run([*command, str(tmp_path / "other.b64")], capture_output=True, text=True, timeout=180)
    assert done.returncode == 1 and "Invalid application image for coredump" in done.stderr


def test_decoding_status_tells_what_is_really_available(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.console import decode

    def status(gdb: str | None, addr2line: str | None, coredump: bool) -> list[tuple[bool, str]]:
        monkeypatch.setattr(decode, "find_gdb", lambda: gdb)
        monkeypatch.setattr(decode, "find_addr2line", lambda: addr2line)
        monkeypatch.setattr(decode, "coredump_decoder_available", lambda: coredump)
        return [(s.available, s.found + " | " + (s.fix or "")) for s in decode.decoding_status()]

    (panic, core) = status("/usr/bin/gdb-multiarch", "/usr/bin/addr2line", True)
    assert panic[0] and "full backtraces" in panic[1] and core[0]
    (panic, core) = status(None, "/usr/bin/riscv64-linux-gnu-addr2line", True)
    assert not panic[0] and "PC, RA and stack-dump code addresses only" in panic[1] and "gdb-multiarch" in panic[1]
    assert not core[0] and "missing a RISC-V gdb" in core[1]
    (panic, core) = status(None, None, False)
    assert "none" in panic[1] and "missing esp-coredump and a RISC-V gdb" in core[1] and "pip install" in core[1]
