"""Backtrace decoding against a real RV32 ELF built here with Debian's RISC-V cross compiler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.console.decode import BacktraceDecoder, file_sha256
from harness.console.events import parse_bytes

GCC = shutil.which("riscv64-linux-gnu-gcc")
SOURCE = """\
int helper(int x) { return x * 3; }
int entry(int y) { return helper(y) + 1; }
"""
pytestmark = pytest.mark.skipif(GCC is None, reason="needs riscv64-linux-gnu-gcc (apt install gcc-riscv64-linux-gnu)")


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("elf")
    (work / "app.c").write_text(SOURCE)
    command = [
        str(GCC), "-march=rv32imc", "-mabi=ilp32", "-g", "-O0", "-nostdlib", "-ffreestanding",
        "-Wl,-e,entry", "-Wl,-Ttext=0x42000000", "-o", str(work / "app.elf"), str(work / "app.c"),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=60)
    return work / "app.elf"


def symbol(elf: Path, name: str) -> str:
    nm = shutil.which("riscv64-linux-gnu-nm") or "nm"
    out = subprocess.run([nm, str(elf)], capture_output=True, text=True, check=True, timeout=30).stdout
    address = next(line.split()[0] for line in out.splitlines() if line.endswith(f" {name}"))
    return f"0x{address}"


def test_decodes_frames_of_a_matching_elf(elf: Path) -> None:
    sha = file_sha256(elf)[:16]
    entry, helper = symbol(elf, "entry"), symbol(elf, "helper")
    log = (
        f"Guru Meditation Error: Core  0 panic'ed (Load access fault). Exception was unhandled.\n"
        f"Backtrace: {helper}:0x4ff3c000 {entry}:0x4ff3c010 0x00000004:0x4ff3c020\n"
        f"ELF file SHA256: {sha}\n"
    ).encode()
    panic = parse_bytes(log)[0]
    result = BacktraceDecoder(elf).decode_event(panic)
    assert result.decoded and result.note is None
    assert [frame.function for frame in result.frames] == ["helper", "entry", None]
    assert result.frames[0].file.endswith("app.c") and result.frames[0].line == 1
    assert result.frames[1].line == 2
    assert str(result.frames[1]).startswith(f"{entry}: entry at ")


def test_sha_mismatch_is_reported_not_decoded(elf: Path) -> None:
    result = BacktraceDecoder(elf).decode([symbol(elf, "entry")], elf_sha256="00000000deadbeef")
    assert not result.decoded
    assert "ELF mismatch" in result.note and "00000000deadbeef" in result.note
    assert result.frames[0].function is None


def test_missing_elf_or_decoder_is_said_once(tmp_path: Path, elf: Path) -> None:
    decoder = BacktraceDecoder(None)
    first, second = decoder.decode(["0x42000000"]), decoder.decode(["0x42000004"])
    assert not first.decoded and "no app ELF" in first.note
    assert second.note is None and second.frames[0].address == "0x42000004"
    missing = BacktraceDecoder(tmp_path / "gone.elf").decode(["0x1"])
    assert "not found" in missing.note
    no_tool = BacktraceDecoder(elf, addr2line=None)
    no_tool.addr2line = None
    assert "no addr2line" in no_tool.decode(["0x1"]).note
