"""Crash decoding: a crash event's addresses -> functions, files and lines, from the app ELF.

Like pytest-embedded-idf's IdfDut, with the same libraries, and saying which way each crash was decoded:

- ``gdb``: a RISC-V panic's register dump and stack memory are served to the toolchain's gdb
  (``riscv32-esp-elf-gdb``, or Debian's ``gdb-multiarch``) by esp-idf-panic-decoder's gdb server, and gdb
  unwinds the whole stack with the ELF's debug information (``bt``). The full backtrace.
- ``addr2line``: without gdb, esp-idf-panic-decoder's address decoder resolves the PC, RA, a printed
  ``Backtrace:`` and every code address found in the stack dump with addr2line (``riscv32-esp-elf-addr2line``,
  Debian's ``riscv64-linux-gnu-addr2line`` or binutils' ``addr2line``). Stack words are candidates, not an
  unwind: a stale return address can appear.
- ``esp-coredump``: a core dump (base64 on the UART, or the raw core dump partition read from flash) is
  decoded by esp-coredump with gdb: the crashed task's backtrace.

The ELF must be the one the device ran: its SHA256 must start with the ``elf_sha256`` the device printed (and
esp-coredump checks the SHA256 recorded in a core dump), otherwise nothing is decoded and the mismatch is
reported. Without an ELF or a tool the raw addresses are kept and the reason is reported once.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.console.events import Event
from harness.console.sanitize import sanitize

log = logging.getLogger(__name__)

ADDR2LINE_CANDIDATES = (
    "riscv32-esp-elf-addr2line",
    "xtensa-esp-elf-addr2line",
    "riscv64-linux-gnu-addr2line",
    "riscv64-unknown-elf-addr2line",
    "addr2line",
)
# A gdb that reads RV32 ELF files: ESP-IDF's, or Debian's multi-architecture build (Debian's plain `gdb`
# knows only the host; it is used only when it can be told `set architecture riscv:rv32`).
GDB_CANDIDATES = ("riscv32-esp-elf-gdb", "gdb-multiarch", "gdb")
TOOL_TIMEOUT_S = 60.0
_GDB_FRAME = re.compile(r"^#(\d+)\s+(?:(0x[0-9a-fA-F]+) in )?(\S+) \(.*?\)(?: at (.+):(\d+))?\s*$")
_REGISTER_ORDER = (
    ("MEPC", "RA", "SP", "GP"),
    ("TP", "T0", "T1", "T2"),
    ("S0/FP", "S1", "A0", "A1"),
    ("A2", "A3", "A4", "A5"),
    ("A6", "A7", "S2", "S3"),
    ("S4", "S5", "S6", "S7"),
    ("S8", "S9", "S10", "S11"),
    ("T3", "T4", "T5", "T6"),
)


@dataclass(frozen=True)
class Frame:
    """One decoded address; ``function``/``file``/``line`` are None when unknown (``??``)."""

    address: str
    function: str | None = None
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.function is None:
            return self.address
        where = f" at {self.file}:{self.line}" if self.file else ""
        return f"{self.address}: {self.function}{where}"


@dataclass
class DecodeResult:
    """Frames of one decode; ``decoded`` is False when only raw addresses could be given (see ``note``).

    ``method`` says how: ``gdb`` (full unwind), ``addr2line`` (PC, RA, backtrace and stack-dump code
    addresses) or ``esp-coredump``.
    """

    frames: list[Frame]
    decoded: bool
    note: str | None = None
    method: str | None = None


def find_addr2line() -> str | None:
    """Path of the first addr2line available on PATH, or None."""
    for name in ADDR2LINE_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@functools.cache
def _gdb_reads_riscv(path: str) -> bool:
    try:
        done = subprocess.run(
            [path, "--batch", "-nx", "-ex", "set architecture riscv:rv32"],
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "Undefined item" not in done.stderr


def find_gdb() -> str | None:
    """Path of a gdb that can unwind RV32 code (ESP-IDF's or gdb-multiarch), or None."""
    for name in GDB_CANDIDATES:
        path = shutil.which(name)
        if path and _gdb_reads_riscv(path):
            return path
    return None


def coredump_decoder_available() -> bool:
    """Whether esp-coredump is installed."""
    try:
        import esp_coredump  # noqa: F401
    except ImportError:
        return False
    return True


def capabilities() -> dict[str, Any]:
    """What crash decoding this machine can do (for `hil doctor` and the docs)."""
    gdb, addr2line = find_gdb(), find_addr2line()
    return {
        "gdb": gdb,
        "addr2line": addr2line,
        "esp_coredump": coredump_decoder_available(),
        "panic": "gdb" if gdb else "addr2line" if addr2line else None,
        "coredump": "esp-coredump" if gdb and coredump_decoder_available() else None,
    }


@dataclass(frozen=True)
class DecodingStatus:
    """One decoding path for `hil doctor`: available or not, what was found, and the fix when it is not."""

    what: str
    available: bool
    found: str
    fix: str | None = None


def decoding_status() -> list[DecodingStatus]:
    """What crash decoding this machine can really do: RISC-V panics and core dumps."""
    caps = capabilities()
    gdb_fix = "apt-get install gdb-multiarch (or ESP-IDF's riscv32-esp-elf-gdb: `. $IDF_PATH/export.sh`)"
    if caps["gdb"]:
        panic = DecodingStatus("panic decoding", True, f"full backtraces: gdb {caps['gdb']} + esp-idf-panic-decoder")
    elif caps["addr2line"]:
        panic = DecodingStatus(
            "panic decoding",
            False,
            f"PC, RA and stack-dump code addresses only: {caps['addr2line']} (no RISC-V gdb for a full unwind)",
            gdb_fix,
        )
    else:
        panic = DecodingStatus("panic decoding", False, "none: no RISC-V gdb and no addr2line", gdb_fix)
    if caps["coredump"]:
        core = DecodingStatus("core dump decoding", True, f"esp-coredump with gdb {caps['gdb']}")
    else:
        missing = [
            name for name, ok in (("esp-coredump", caps["esp_coredump"]), ("a RISC-V gdb", caps["gdb"])) if not ok
        ]
        fixes = {"esp-coredump": "pip install esp-coredump", "a RISC-V gdb": gdb_fix}
        core = DecodingStatus(
            "core dump decoding", False, f"none: missing {' and '.join(missing)}", "; ".join(fixes[m] for m in missing)
        )
    return [panic, core]


def file_sha256(path: Path) -> str:
    """Hex SHA256 of a file (ESP-IDF prints a prefix of the ELF file's SHA256)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def panic_text(fields: dict[str, Any]) -> str | None:
    """The register dump and stack memory of a RISC-V panic, as esp-idf-panic-decoder parses them."""
    registers = fields.get("registers") or {}
    stack = fields.get("stack_memory") or []
    if "MEPC" not in registers or not stack:
        return None
    lines = [f"Core  {int(fields.get('core') or 0)} register dump:"]
    for row in _REGISTER_ORDER:
        present = [name for name in row if name in registers]
        if present:
            lines.append("  ".join(f"{name:<8}: {registers[name]}" for name in present))
    return "\n".join([*lines, "", "Stack memory:", *stack, ""]) + "\n"


class BacktraceDecoder:
    """Decodes crash events against one ELF file; reports a missing ELF or tool only once."""

    def __init__(self, elf: str | Path | None, addr2line: str | None = None, gdb: str | bool | None = True) -> None:
        """Args:
        elf: the app ELF the device runs.
        addr2line: addr2line to use (default: the first of ``ADDR2LINE_CANDIDATES`` found).
        gdb: gdb to use; True finds one (``GDB_CANDIDATES``), None or False decodes without gdb.
        """
        self.elf = Path(elf) if elf else None
        self.addr2line = addr2line or find_addr2line()
        self.gdb = find_gdb() if gdb is True else (gdb or None)
        self._elf_sha256: str | None = None
        self._reported = False

    def _unavailable_reason(self) -> str | None:
        if self.elf is None:
            return "no app ELF given: backtrace addresses are shown raw (pass the ELF to decode them)"
        if not self.elf.is_file():
            return f"app ELF {self.elf} not found: backtrace addresses are shown raw"
        if self.addr2line is None and self.gdb is None:
            return (
                "no gdb and no addr2line found (" + ", ".join(GDB_CANDIDATES + ADDR2LINE_CANDIDATES) + "): "
                "backtrace addresses are shown raw; install gdb-multiarch or ESP-IDF's toolchain"
            )
        return None

    def elf_sha256(self) -> str:
        """SHA256 of the ELF file (computed once)."""
        if self._elf_sha256 is None:
            assert self.elf is not None
            self._elf_sha256 = file_sha256(self.elf)
        return self._elf_sha256

    def sha_mismatch(self, printed: str | None) -> str | None:
        """Message when the device-printed ``elf_sha256`` does not match the ELF, else None."""
        if not printed:
            return None
        actual = self.elf_sha256()
        if actual.startswith(printed.lower()):
            return None
        return (
            f"ELF mismatch: the device printed ELF SHA256 {printed} but {self.elf} has {actual[: len(printed)]}; "
            "not decoding (flash this ELF, or give the ELF the device runs)"
        )

    def _refusal(self, addresses: list[str], elf_sha256: str | None) -> DecodeResult | None:
        raw = [Frame(address) for address in addresses]
        reason = self._unavailable_reason()
        if reason:
            note = None if self._reported else reason
            if not self._reported:
                log.warning("%s", reason)
                self._reported = True
            return DecodeResult(raw, False, note)
        mismatch = self.sha_mismatch(elf_sha256)
        if mismatch:
            log.warning("%s", mismatch)
            return DecodeResult(raw, False, mismatch)
        return None

    def decode(self, addresses: list[str], elf_sha256: str | None = None) -> DecodeResult:
        """Resolve a list of addresses to frames with addr2line.

        Args:
            addresses: hex addresses (``0x4200a5d2``) as printed by the device.
            elf_sha256: the SHA256 prefix the device printed; checked against the ELF when given.
        """
        refused = self._refusal(addresses, elf_sha256)
        if refused:
            return refused
        if not addresses:
            return DecodeResult([], True, method="addr2line")
        if self.addr2line is None:
            return DecodeResult([Frame(a) for a in addresses], False, "no addr2line found: addresses shown raw")
        return DecodeResult(self._addr2line(" ".join(addresses), addresses), True, method="addr2line")

    def decode_event(self, event: Event) -> DecodeResult:
        """Decode a crash event: gdb's full unwind of a RISC-V panic when possible, else addr2line over the
        printed backtrace, or over the PC, RA and the code addresses in the stack dump."""
        fields = event.fields
        backtrace = [str(a) for a in fields.get("backtrace") or []]
        candidates = backtrace or [str(fields[name]) for name in ("pc", "ra") if fields.get(name)]
        refused = self._refusal(candidates, fields.get("elf_sha256"))
        if refused:
            return refused
        text = panic_text(fields)
        if text is not None and not backtrace and self.gdb is not None:
            frames, problem = self._gdb_backtrace(text)
            if frames:
                return DecodeResult(frames, True, method="gdb")
            log.warning("gdb could not unwind the panic (%s): falling back to addr2line", problem)
        if self.addr2line is None:
            return DecodeResult([Frame(a) for a in candidates], False, "no addr2line found: addresses shown raw")
        if backtrace or text is None:
            return DecodeResult(self._addr2line(" ".join(candidates), candidates), True, method="addr2line")
        # PC and RA first, then every word of the stack dump that points into the ELF's code, in stack order.
        stack_words = " ".join(line.partition(":")[2] for line in fields.get("stack_memory") or [])
        return DecodeResult(self._addr2line(" ".join(candidates) + " " + stack_words, None), True, method="addr2line")

    def _addr2line(self, text: str, addresses: list[str] | None) -> list[Frame]:
        """Addresses found in ``text`` resolved by esp-idf-panic-decoder (code addresses of the ELF only,
        first appearance of each); with ``addresses``, one frame per given address (raw when unknown)."""
        from esp_idf_panic_decoder import PcAddressDecoder

        assert self.addr2line is not None and self.elf is not None
        prefix = self.addr2line[: -len("addr2line")]
        decoder = PcAddressDecoder(prefix, str(self.elf))
        found: dict[str, Frame] = {}
        for address, trace in decoder.translate_addresses(text):
            if address in found or not trace:
                continue
            location = trace[0]  # the innermost function; further entries are the functions it was inlined into
            line = int(location.line) if location.line.isdigit() and int(location.line) > 0 else None
            found[address] = Frame(
                address,
                None if location.func == "??" else sanitize(location.func),
                None if location.path in ("??", "") else sanitize(location.path),
                line,
            )
        if addresses is None:
            return list(found.values())
        return [found.get(address.lower(), Frame(address)) for address in addresses]

    def _gdb_backtrace(self, text: str) -> tuple[list[Frame], str]:
        """gdb's ``bt`` of a panic served by esp-idf-panic-decoder's gdb server (its documented use)."""
        assert self.gdb is not None and self.elf is not None
        with tempfile.TemporaryDirectory(prefix="hil-panic-") as work:
            dump = Path(work) / "panic.txt"
            dump.write_text(text, encoding="utf-8")
            server = f'target remote | "{sys.executable}" -m esp_idf_panic_decoder "{dump}"'
            command = [self.gdb, "--batch", "-n", str(self.elf), "-ex", server, "-ex", "bt"]
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False, cwd=work
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return [], str(exc)
        frames = []
        for line in done.stdout.splitlines():
            match = _GDB_FRAME.match(line.strip())
            if match:
                number, address, function, file, lineno = match.groups()
                if address is None and number == "0":
                    address = re.search(r"MEPC\s*:\s*(0x[0-9a-fA-F]+)", text)[1]  # type: ignore[index]
                frames.append(
                    Frame(
                        address or "?",
                        None if function == "??" else sanitize(function),
                        sanitize(file) if file else None,
                        int(lineno) if lineno else None,
                    )
                )
        return frames, sanitize(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no frames")

    def decode_coredump(self, payload: bytes, core_format: str, chip: str = "esp32p4") -> DecodeResult:
        """Decode a core dump with esp-coredump: the crashed task's backtrace.

        Args:
            payload: the base64 text printed between ``CORE DUMP START`` and ``END`` (``core_format="b64"``),
                or the raw core dump partition read from flash (``core_format="raw"``).
            core_format: ``b64`` or ``raw``.
            chip: the target chip.

        esp-coredump refuses a core dump whose recorded app SHA256 is not the ELF's; the refusal is the note.
        """
        refused = self._refusal([], None)
        if refused:
            return refused
        if not coredump_decoder_available() or self.gdb is None:
            missing = "esp-coredump" if not coredump_decoder_available() else "a gdb for RISC-V (gdb-multiarch)"
            return DecodeResult([], False, f"core dump not decoded: {missing} is not installed")
        with tempfile.TemporaryDirectory(prefix="hil-coredump-") as work:
            core = Path(work) / f"core.{core_format}"
            core.write_bytes(payload)
            command = [
                sys.executable, "-m", "esp_coredump", "--chip", chip, "info_corefile", "--core", str(core),
                "--core-format", core_format, "--gdb", self.gdb, str(self.elf),
            ]  # fmt: skip
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=TOOL_TIMEOUT_S,
                    check=False,
                    cwd=work,
                    env={**os.environ, "NO_COLOR": "1", "TERM": "dumb"},
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return DecodeResult([], False, f"esp-coredump failed: {exc}")
        output = sanitize(done.stdout + "\n" + done.stderr)
        section = output.partition("CURRENT THREAD STACK")[2].partition("THREADS INFO")[0]
        pc = re.search(r"^pc\s+(0x[0-9a-fA-F]+)", output, re.MULTILINE)
        frames = []
        for line in section.splitlines():
            match = _GDB_FRAME.match(line.strip())
            if match:
                _, address, function, file, lineno = match.groups()
                address = address or (pc[1] if pc and not frames else "?")
                frames.append(Frame(address, function, file, int(lineno) if lineno else None))
        # Later sections (thread list, memory regions) can fail on a damaged dump: the crashed task's stack
        # is what counts.
        if not frames:
            problem = next(
                (
                    line.strip()
                    for line in output.splitlines()
                    if "Invalid" in line or "Failed" in line or "rror" in line
                ),
                f"esp-coredump exited with {done.returncode}",
            )
            return DecodeResult([], False, f"core dump not decoded: {problem}")
        return DecodeResult(frames, True, method="esp-coredump")


def coredump_partition(partition_table: bytes) -> tuple[int, int] | None:
    """Offset and size of the core dump partition (data/coredump) in an ESP-IDF partition table."""
    for start in range(0, len(partition_table) - 31, 32):
        magic, kind, subtype, offset, size = struct.unpack_from("<HBBII", partition_table, start)
        if magic != 0x50AA:
            break
        if kind == 0x01 and subtype == 0x03:
            return offset, size
    return None


PARTITION_TABLE_OFFSET = 0x8000
PARTITION_TABLE_SIZE = 0xC00


def read_coredump_partition(port: str, chip: str = "esp32p4", baud: int = 460800) -> bytes:
    """Read the core dump partition from a board's flash with esptool (partition table at 0x8000).

    Raises:
        BoardError: esptool failed, or the partition table has no core dump partition.
    """
    from harness.errors import BoardError

    def read(offset: int, size: int, target: Path) -> bytes:
        command = [
            sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(baud),
            "--after", "no-reset", "read-flash", hex(offset), hex(size), str(target),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BoardError(f"esptool could not read flash on {port}: {exc}") from exc
        if done.returncode != 0:
            last = sanitize(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip())
            raise BoardError(f"esptool could not read flash on {port}: {last}")
        return target.read_bytes()

    with tempfile.TemporaryDirectory(prefix="hil-flash-") as work:
        table = read(PARTITION_TABLE_OFFSET, PARTITION_TABLE_SIZE, Path(work) / "table.bin")
        partition = coredump_partition(table)
        if partition is None:
            raise BoardError(
                f"the partition table on {port} has no core dump partition (data, coredump): "
                "enable CONFIG_ESP_COREDUMP_ENABLE_TO_FLASH and add one"
            )
        return read(*partition, Path(work) / "coredump.bin")
