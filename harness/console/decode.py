"""Backtrace decoding: addresses of a crash event -> function, file and line, from the app ELF.

Uses the toolchain's addr2line (``riscv32-esp-elf-addr2line`` from ESP-IDF; Debian's
``riscv64-linux-gnu-addr2line`` or binutils' ``addr2line`` read RV32 ELF files just as well). The
ELF must be the one the device runs: its SHA256 must start with the ``elf_sha256`` the device
printed, otherwise nothing is decoded and the mismatch is reported. Without an ELF or a decoder the
raw addresses are kept and the reason is reported once per decoder.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.console.events import Event

log = logging.getLogger(__name__)

ADDR2LINE_CANDIDATES = (
    "riscv32-esp-elf-addr2line",
    "xtensa-esp-elf-addr2line",
    "riscv64-linux-gnu-addr2line",
    "riscv64-unknown-elf-addr2line",
    "addr2line",
)
ADDR2LINE_TIMEOUT_S = 20.0


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
    """Frames of one decode; ``decoded`` is False when only raw addresses could be given (see ``note``)."""

    frames: list[Frame]
    decoded: bool
    note: str | None = None


def find_addr2line() -> str | None:
    """Path of the first addr2line available on PATH, or None."""
    for name in ADDR2LINE_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def file_sha256(path: Path) -> str:
    """Hex SHA256 of a file (ESP-IDF prints a prefix of the ELF file's SHA256)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class BacktraceDecoder:
    """Decodes addresses against one ELF file; reports a missing ELF or decoder only once."""

    def __init__(self, elf: str | Path | None, addr2line: str | None = None) -> None:
        self.elf = Path(elf) if elf else None
        self.addr2line = addr2line or find_addr2line()
        self._elf_sha256: str | None = None
        self._reported = False

    def _unavailable_reason(self) -> str | None:
        if self.elf is None:
            return "no app ELF given: backtrace addresses are shown raw (pass the ELF to decode them)"
        if not self.elf.is_file():
            return f"app ELF {self.elf} not found: backtrace addresses are shown raw"
        if self.addr2line is None:
            return (
                "no addr2line found (" + ", ".join(ADDR2LINE_CANDIDATES) + "): backtrace addresses are shown raw; "
                "install ESP-IDF's toolchain or binutils"
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

    def decode(self, addresses: list[str], elf_sha256: str | None = None) -> DecodeResult:
        """Resolve addresses to frames.

        Args:
            addresses: hex addresses (``0x4200a5d2``) as printed by the device.
            elf_sha256: the SHA256 prefix the device printed; checked against the ELF when given.
        """
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
        if not addresses:
            return DecodeResult([], True)
        return DecodeResult(self._run_addr2line(addresses), True)

    def _run_addr2line(self, addresses: list[str]) -> list[Frame]:
        command = [str(self.addr2line), "-e", str(self.elf), "-f", "-C", "-a", *addresses]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=ADDR2LINE_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("addr2line failed (%s): backtrace addresses are shown raw", exc)
            return [Frame(address) for address in addresses]
        return _parse_addr2line(result.stdout, addresses)

    def decode_event(self, event: Event) -> DecodeResult:
        """Decode a crash event's backtrace (or its PC and RA when it printed no backtrace)."""
        fields = event.fields
        addresses = list(fields.get("backtrace") or [])
        if not addresses:
            addresses = [fields[name] for name in ("pc", "ra") if isinstance(fields.get(name), str)]
        return self.decode(addresses, fields.get("elf_sha256"))


def _parse_addr2line(output: str, addresses: list[str]) -> list[Frame]:
    """Parse ``addr2line -a -f`` output: per address an ``0x...`` line, a function line and ``file:line``."""
    frames: list[Frame] = []
    lines = output.splitlines()
    index = 0
    for address in addresses:
        if index + 2 >= len(lines):
            frames.append(Frame(address))
            continue
        function, location = lines[index + 1], lines[index + 2]
        index += 3
        file, _, line = location.rpartition(":")
        line = line.split(" ", 1)[0]  # "12 (discriminator 1)"
        frames.append(
            Frame(
                address,
                None if function == "??" else function,
                None if file in ("??", "") else file,
                int(line) if line.isdigit() and int(line) > 0 else None,
            )
        )
    return frames
