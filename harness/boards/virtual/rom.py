"""The virtual ESP32-P4's ROM serial bootloader, spoken on a file descriptor (a pty master).

It answers the real esptool: SLIP framing, SYNC, register access (eFuse MAC and chip revision, a model
of the SPIMEM1 user-command registers esptool drives to read the flash id, SFDP and status), flash
writes (plain and zlib-compressed), MD5, and RAM download. When esptool uploads its own flasher stub
(recognised byte-for-byte against esptool's stub files), the loader replies ``OHAI`` and from then on
speaks the stub dialect: 2 status bytes, raw 16-byte MD5, READ_FLASH, ERASE_FLASH/ERASE_REGION.

Use as a library::

    loader = RomLoader(master_fd, SpiFlash(board_dir), mac="60:55:f9:00:00:01", chip_rev=100)
    why = loader.serve(stop_event)   # RomExit.RUN_APP when esptool asks to run the flashed app
"""

from __future__ import annotations

import enum
import errno
import fcntl
import hashlib
import json
import os
import select
import struct
import threading
import time
import zlib
from base64 import b64decode
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.boards.virtual.flash import SECTOR_SIZE, SpiFlash
from harness.errors import BoardError, ConfigError

ESP32P4_CHIP_ID = 18

# Command opcodes (esptool's ESPLoader.ESP_CMDS).
FLASH_BEGIN = 0x02
FLASH_DATA = 0x03
FLASH_END = 0x04
MEM_BEGIN = 0x05
MEM_END = 0x06
MEM_DATA = 0x07
SYNC = 0x08
WRITE_REG = 0x09
READ_REG = 0x0A
SPI_SET_PARAMS = 0x0B
SPI_ATTACH = 0x0D
READ_FLASH_SLOW = 0x0E
CHANGE_BAUDRATE = 0x0F
FLASH_DEFL_BEGIN = 0x10
FLASH_DEFL_DATA = 0x11
FLASH_DEFL_END = 0x12
SPI_FLASH_MD5 = 0x13
GET_SECURITY_INFO = 0x14
ERASE_FLASH = 0xD0
ERASE_REGION = 0xD1
READ_FLASH = 0xD2
RUN_USER_CODE = 0xD3

# ROM failures: status byte 1 plus a reason (esptool shows 0x1NN); stub failures: the code then 0.
ROM_INVALID_MESSAGE = 0x05
ROM_FAILED = 0x06
ROM_BAD_CHECKSUM = 0x07
ROM_DEFLATE_ERROR = 0x0B
STUB_BAD_DATA_LEN = 0xC0
STUB_BAD_CHECKSUM = 0xC1
STUB_NOT_IN_FLASH_MODE = 0xC6
STUB_INFLATE_ERROR = 0xC7
STUB_NOT_IMPLEMENTED = 0xFF

CHECKSUM_SEED = 0xEF
ROM_SYNC_VALUE = 0x20120707  # any non-zero value: esptool reads 0 as "the stub is already running"
SYNC_REPLIES = 8  # esptool reads one reply and then drains 7 more

# eFuse words esptool reads (esptool/targets/esp32p4.py).
EFUSE_MAC0 = 0x5012D044
EFUSE_MAC1 = 0x5012D048
EFUSE_REV_WORD = 0x5012D04C

# SPIMEM1 user-command registers.
SPI_BASE = 0x5008D000
SPI_CMD = SPI_BASE + 0x00
SPI_ADDR = SPI_BASE + 0x04
SPI_USR = SPI_BASE + 0x18
SPI_USR2 = SPI_BASE + 0x20
SPI_MISO_DLEN = SPI_BASE + 0x28
SPI_W0 = SPI_BASE + 0x58
SPI_CMD_USR = 1 << 18
SPI_USR_MISO = 1 << 28

FLASH_JEDEC_ID = bytes([0xEF, 0x40, 0x18])  # Winbond W25Q128: RDID reads back 0x1840EF = 16 MB
# SFDP: signature, revision 1.6, one parameter header (JEDEC basic table); unread bytes are 0xFF.
_SFDP = b"SFDP" + bytes([0x06, 0x01, 0x00, 0xFF, 0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xFF])

_POLL_S = 0.1
_WRITE_STALL_S = 2.0
_ACK_TIMEOUT_S = 5.0


class RomExit(enum.Enum):
    """Why :meth:`RomLoader.serve` returned."""

    STOPPED = "stopped"  # the caller's stop event was set
    RUN_APP = "run_app"  # esptool asked the loader to leave download mode and run the flashed app
    PORT_CLOSED = "port_closed"  # the file descriptor reached end of file


def parse_mac(mac: str | bytes) -> bytes:
    """Return a MAC as 6 bytes from ``"aa:bb:cc:dd:ee:ff"`` or 6 raw bytes."""
    if isinstance(mac, bytes):
        raw = mac
    else:
        try:
            raw = bytes(int(part, 16) for part in mac.replace("-", ":").split(":"))
        except ValueError:
            raw = b""
    if len(raw) != 6:
        raise ConfigError(f"MAC {mac!r} is not 6 bytes; write it as aa:bb:cc:dd:ee:ff")
    return raw


def parse_chip_rev(rev: int | str) -> int:
    """Return a chip revision as esptool counts it (major * 100 + minor) from ``301``, ``"3.1"`` or ``"v3.1"``."""
    if isinstance(rev, str):
        text = rev.lower().lstrip("v")
        try:
            major, _, minor = text.partition(".")
            value = int(major) * 100 + int(minor or 0)
        except ValueError:
            raise ConfigError(f"chip revision {rev!r} is not like v1.0 or v3.1") from None
    else:
        value = rev
    major, minor = divmod(value, 100)
    if not (0 <= major <= 7 and 0 <= minor <= 15):
        raise ConfigError(f"chip revision {rev!r} is out of range (major 0-7, minor 0-15); use e.g. v1.0 or v3.1")
    return value


def efuse_revision_word(chip_rev: int) -> int:
    """Encode major/minor revision as the P4's eFuse block-1 word 2 holds them."""
    major, minor = divmod(chip_rev, 100)
    return (minor & 0xF) | ((major & 0x3) << 4) | (((major >> 2) & 1) << 23)


def slip_encode(packet: bytes) -> bytes:
    """Frame a packet for the wire (0xC0 delimiters, 0xDB escapes)."""
    return b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


class SlipDecoder:
    """Incremental SLIP decoder: feed bytes, collect complete packets (bytes outside frames are dropped)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._in_frame = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the packets they completed."""
        packets = []
        for index, piece in enumerate(bytes(data).split(b"\xc0")):
            if index > 0:  # a delimiter ends the current frame and opens the next one
                if self._in_frame and self._buffer:
                    packets.append(bytes(self._buffer).replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb"))
                self._in_frame = True
                self._buffer.clear()
            if self._in_frame:
                self._buffer += piece
        return packets


@dataclass(frozen=True)
class StubImage:
    """One of esptool's flasher stubs, as uploaded by MEM_BEGIN/MEM_DATA/MEM_END."""

    name: str
    text_start: int
    text: bytes
    entry: int


def esptool_stub_images() -> list[StubImage]:
    """Load the ESP32-P4 flasher stubs shipped with the installed esptool (all stub versions)."""
    import esptool  # local import: only needed to locate the stub files

    stub_dir = Path(esptool.__file__).parent / "targets" / "stub_flasher"
    images = []
    for path in sorted(stub_dir.glob("*/esp32p4*.json")):
        stub = json.loads(path.read_text())
        images.append(
            StubImage(f"{path.parent.name}/{path.name}", stub["text_start"], b64decode(stub["text"]), stub["entry"])
        )
    return images


class _FlashWrite:
    """An open FLASH_BEGIN / FLASH_DEFL_BEGIN session."""

    def __init__(self, offset: int, compressed: bool) -> None:
        self.next_write = offset
        self.next_seq = 0
        self.inflater = zlib.decompressobj() if compressed else None


@dataclass
class _MemDownload:
    offset: int = 0
    size: int = 0
    data: bytearray = field(default_factory=bytearray)


class _Failure(Exception):
    """A command failed; ``code`` is the reason byte sent back to esptool."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class _Exit(Exception):
    def __init__(self, reason: RomExit) -> None:
        super().__init__(reason.value)
        self.reason = reason


class RomLoader:
    """ESP32-P4 ROM download mode (and esptool's flasher stub) served on a pty master.

    Args:
        fd: File descriptor to serve (a pty master in raw mode). Not closed by the loader.
        flash: The board's SPI flash.
        mac: Base MAC address reported by eFuse (``"aa:bb:cc:dd:ee:ff"`` or 6 bytes).
        chip_rev: Chip revision, ``100`` / ``"v1.0"`` (default) or ``301`` / ``"v3.1"`` and so on.
    """

    def __init__(self, fd: int, flash: SpiFlash, *, mac: str | bytes, chip_rev: int | str = 100) -> None:
        self.fd = fd
        self.flash = flash
        self.mac = parse_mac(mac)
        self.chip_rev = parse_chip_rev(chip_rev)
        self.stub_running = False
        self.stub_name: str | None = None
        self._stubs = esptool_stub_images()
        self._decoder = SlipDecoder()
        self._packets: deque[bytes] = deque()
        self._registers: dict[int, int] = {
            EFUSE_MAC0: int.from_bytes(self.mac[2:6], "big"),
            EFUSE_MAC1: int.from_bytes(self.mac[0:2], "big"),
            EFUSE_REV_WORD: efuse_revision_word(self.chip_rev),
        }
        self._flash_status = [0, 0, 0]
        self._write: _FlashWrite | None = None
        self._mem: _MemDownload | None = None
        self._ram: dict[int, bytes] = {}
        self._stop = threading.Event()
        self._dispatch = self._handlers()

    # ----------------------------------------------------------------- serving

    def serve(self, stop: threading.Event) -> RomExit:
        """Answer esptool until ``stop`` is set, esptool asks to run the app, or the port closes.

        The loader always starts as the ROM (a reset ends any running stub).
        """
        self._stop = stop
        self.stub_running = False
        self._write = None
        self._mem = None
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        try:
            while True:
                packet = self._next_packet(timeout=None)
                if packet is None:
                    return RomExit.STOPPED
                self._handle(packet)
        except _Exit as done:
            return done.reason
        finally:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags)

    def _next_packet(self, timeout: float | None) -> bytes | None:
        """Next received SLIP packet; None when stopped or ``timeout`` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._packets:
            if self._stop.is_set():
                return None
            wait = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if wait <= 0:
                return None
            readable, _, _ = select.select([self.fd], [], [], wait)
            if not readable:
                continue
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                # A pty master reads EIO while no process has the slave open: wait for one.
                self._stop.wait(_POLL_S)
                continue
            if not data:
                raise _Exit(RomExit.PORT_CLOSED)
            self._packets.extend(self._decoder.feed(data))
        return self._packets.popleft()

    def _send(self, packet: bytes) -> None:
        data = memoryview(slip_encode(packet))
        stalled_since = time.monotonic()
        while data:
            if self._stop.is_set():
                raise _Exit(RomExit.STOPPED)
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                written = 0
            if written:
                data = data[written:]
                stalled_since = time.monotonic()
                continue
            # Nobody is draining the port: like a UART with no listener, the bytes are lost.
            if time.monotonic() - stalled_since > _WRITE_STALL_S:
                return
            select.select([], [self.fd], [], _POLL_S)

    def _reply(self, op: int, value: int = 0, payload: bytes = b"", error: int = 0) -> None:
        if self.stub_running:
            status = bytes([error, 0]) if error else b"\x00\x00"
        else:
            status = bytes([1, error, 0, 0]) if error else b"\x00\x00\x00\x00"
        body = payload + status
        self._send(struct.pack("<BBHI", 1, op, len(body), value) + body)

    # ---------------------------------------------------------------- dispatch

    def _handle(self, packet: bytes) -> None:
        if len(packet) < 8 or packet[0] != 0:
            return  # not a request (noise, or an echo): the ROM ignores it
        _, op, size, checksum = struct.unpack_from("<BBHI", packet)
        data = packet[8:]
        if len(data) != size:
            self._reply(op, error=self._code(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN))
            return
        handler = self._dispatch.get(op)
        if handler is None or (op >= ERASE_FLASH and not self.stub_running):
            self._reply(op, error=self._code(ROM_INVALID_MESSAGE, STUB_NOT_IMPLEMENTED))
            return
        try:
            handler(op, data, checksum)
        except _Failure as failure:
            self._reply(op, error=failure.code)
        except (struct.error, ValueError, IndexError):
            self._reply(op, error=self._code(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN))

    def _handlers(self) -> dict[int, Callable[[int, bytes, int], None]]:
        return {
            SYNC: self._sync,
            READ_REG: self._read_reg,
            WRITE_REG: self._write_reg,
            GET_SECURITY_INFO: self._security_info,
            SPI_ATTACH: self._ok,
            SPI_SET_PARAMS: self._ok,
            CHANGE_BAUDRATE: self._ok,
            FLASH_BEGIN: self._flash_begin,
            FLASH_DEFL_BEGIN: self._flash_begin,
            FLASH_DATA: self._flash_data,
            FLASH_DEFL_DATA: self._flash_data,
            FLASH_END: self._flash_end,
            FLASH_DEFL_END: self._flash_end,
            SPI_FLASH_MD5: self._md5,
            MEM_BEGIN: self._mem_begin,
            MEM_DATA: self._mem_data,
            MEM_END: self._mem_end,
            READ_FLASH_SLOW: self._read_flash_slow,
            ERASE_FLASH: self._erase_flash,
            ERASE_REGION: self._erase_region,
            READ_FLASH: self._read_flash,
            RUN_USER_CODE: self._run_user_code,
        }

    def _code(self, rom_code: int, stub_code: int) -> int:
        return stub_code if self.stub_running else rom_code

    def _ok(self, op: int, data: bytes, checksum: int) -> None:
        self._reply(op)

    def _check_block(self, data: bytes, checksum: int) -> bytes:
        length, _seq, _, _ = struct.unpack_from("<IIII", data)
        block = data[16:]
        if len(block) != length:
            raise _Failure(self._code(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN), "block length mismatch")
        actual = CHECKSUM_SEED
        for byte in block:
            actual ^= byte
        if actual != checksum & 0xFF:
            raise _Failure(self._code(ROM_BAD_CHECKSUM, STUB_BAD_CHECKSUM), "block checksum mismatch")
        return block

    # --------------------------------------------------------------- commands

    def _sync(self, op: int, data: bytes, checksum: int) -> None:
        if data[:4] != b"\x07\x07\x12\x20":
            raise _Failure(self._code(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN), "bad sync pattern")
        value = 0 if self.stub_running else ROM_SYNC_VALUE
        for _ in range(SYNC_REPLIES):
            self._reply(op, value=value)

    def _read_reg(self, op: int, data: bytes, checksum: int) -> None:
        (address,) = struct.unpack_from("<I", data)
        self._reply(op, value=self._registers.get(address, 0))

    def _write_reg(self, op: int, data: bytes, checksum: int) -> None:
        if len(data) % 16:
            raise _Failure(self._code(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN), "WRITE_REG takes 16-byte entries")
        for index in range(0, len(data), 16):
            address, value, mask, _delay_us = struct.unpack_from("<IIII", data, index)
            old = self._registers.get(address, 0)
            self._registers[address] = (old & ~mask | value & mask) & 0xFFFFFFFF
            if address == SPI_CMD and value & mask & SPI_CMD_USR:
                self._run_spi_user_command()
        self._reply(op)

    def _run_spi_user_command(self) -> None:
        """Execute what esptool programmed into SPIMEM1 and leave the MISO bits in W0."""
        regs = self._registers
        command = regs.get(SPI_USR2, 0) & 0xFF
        address = regs.get(SPI_ADDR, 0) & 0xFFFFFF
        miso_bits = regs.get(SPI_MISO_DLEN, 0) + 1 if regs.get(SPI_USR, 0) & SPI_USR_MISO else 0
        mosi = regs.get(SPI_W0, 0)
        if command == 0x9F:  # RDID
            response = FLASH_JEDEC_ID
        elif command == 0x5A:  # RDSFDP
            response = (_SFDP[address:] + b"\xff" * 4)[:4]
        elif command in (0x05, 0x35, 0x15):  # RDSR, RDSR2, RDSR3
            response = bytes([self._flash_status[(0x05, 0x35, 0x15).index(command)]])
        elif command in (0x01, 0x31, 0x11):  # WRSR, WRSR2, WRSR3
            index = (0x01, 0x31, 0x11).index(command)
            self._flash_status[index] = mosi & 0xFF
            if command == 0x01 and regs.get(SPI_BASE + 0x24, 0) >= 15:  # 16-bit WRSR
                self._flash_status[1] = (mosi >> 8) & 0xFF
            response = b""
        else:  # WREN, WRDI, reset, power-down and the like: accepted, nothing to read
            response = b""
        value = int.from_bytes((response + bytes(4))[:4], "little")
        if miso_bits:
            regs[SPI_W0] = value & ((1 << min(miso_bits, 32)) - 1)
        regs[SPI_CMD] = regs.get(SPI_CMD, 0) & ~SPI_CMD_USR

    def _security_info(self, op: int, data: bytes, checksum: int) -> None:
        flags, flash_crypt_cnt, key_purposes = 0, 0, bytes(7)
        payload = struct.pack("<IB7sII", flags, flash_crypt_cnt, key_purposes, ESP32P4_CHIP_ID, 0)
        self._reply(op, payload=payload)

    def _flash_begin(self, op: int, data: bytes, checksum: int) -> None:
        size, _blocks, _block_size, offset = struct.unpack_from("<IIII", data)
        if offset + size > self.flash.size:
            raise _Failure(self._code(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN), "write past the end of flash")
        # ROM and stub both end up with the written sectors erased; the stub does it lazily, we up front.
        self.flash.erase(offset, size)
        self._write = _FlashWrite(offset, compressed=op == FLASH_DEFL_BEGIN)
        self._reply(op)

    def _flash_data(self, op: int, data: bytes, checksum: int) -> None:
        session = self._write
        if session is None or (session.inflater is not None) != (op == FLASH_DEFL_DATA):
            raise _Failure(self._code(ROM_FAILED, STUB_NOT_IN_FLASH_MODE), "no matching FLASH_BEGIN")
        block = self._check_block(data, checksum)
        (seq,) = struct.unpack_from("<I", data, 4)
        if seq != session.next_seq:
            raise _Failure(self._code(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN), f"expected block {session.next_seq}")
        if session.inflater is not None:
            try:
                block = session.inflater.decompress(block)
            except zlib.error:
                raise _Failure(self._code(ROM_DEFLATE_ERROR, STUB_INFLATE_ERROR), "inflate failed") from None
        end = min(session.next_write + len(block), self.flash.size)
        self.flash.write(session.next_write, block[: end - session.next_write])
        session.next_write = end
        session.next_seq += 1
        self._reply(op)

    def _flash_end(self, op: int, data: bytes, checksum: int) -> None:
        (stay,) = struct.unpack_from("<I", data) if data else (0,)
        self._write = None
        self._reply(op)
        if self.stub_running:
            if not stay:  # "reboot": esptool expects to find the ROM loader again
                self.stub_running = False
                self.stub_name = None
        elif stay:  # ROM: flag 1 means "leave download mode and run the user code"
            raise _Exit(RomExit.RUN_APP)

    def _md5(self, op: int, data: bytes, checksum: int) -> None:
        address, size = struct.unpack_from("<II", data)
        try:
            digest = self.flash.md5(address, size)
        except BoardError:
            raise _Failure(self._code(ROM_FAILED, STUB_BAD_DATA_LEN), "md5 range outside flash") from None
        payload = digest if self.stub_running else digest.hex().encode()
        self._reply(op, payload=payload)

    def _mem_begin(self, op: int, data: bytes, checksum: int) -> None:
        size, _blocks, _block_size, offset = struct.unpack_from("<IIII", data)
        self._mem = _MemDownload(offset=offset, size=size)
        self._reply(op)

    def _mem_data(self, op: int, data: bytes, checksum: int) -> None:
        if self._mem is None:
            raise _Failure(self._code(ROM_FAILED, STUB_NOT_IN_FLASH_MODE), "MEM_DATA without MEM_BEGIN")
        self._mem.data += self._check_block(data, checksum)
        if len(self._mem.data) >= self._mem.size:
            self._ram[self._mem.offset] = bytes(self._mem.data[: self._mem.size])
        self._reply(op)

    def _mem_end(self, op: int, data: bytes, checksum: int) -> None:
        no_entry, entry = struct.unpack_from("<II", data)
        self._mem = None
        if no_entry:
            self._reply(op)
            return
        stub = next((s for s in self._stubs if s.entry == entry and self._ram.get(s.text_start) == s.text), None)
        if stub is None:
            # Only esptool's own stub can be "executed": anything else would need a CPU.
            raise _Failure(self._code(ROM_FAILED, STUB_NOT_IMPLEMENTED), "unknown RAM image")
        self._reply(op)
        self._ram.clear()
        self.stub_running = True
        self.stub_name = stub.name
        self._send(b"OHAI")

    def _read_flash_slow(self, op: int, data: bytes, checksum: int) -> None:
        address, length = struct.unpack_from("<II", data)
        if length > 64 or address + length > self.flash.size:
            raise _Failure(ROM_INVALID_MESSAGE, "READ_FLASH_SLOW reads at most 64 bytes inside the flash")
        self._reply(op, payload=self.flash.read(address, length).ljust(64, b"\xff"))

    def _erase_flash(self, op: int, data: bytes, checksum: int) -> None:
        self.flash.erase_all()
        self._reply(op)

    def _erase_region(self, op: int, data: bytes, checksum: int) -> None:
        offset, size = struct.unpack_from("<II", data)
        if offset % SECTOR_SIZE or size % SECTOR_SIZE or offset + size > self.flash.size:
            raise _Failure(STUB_BAD_DATA_LEN, "erase region must be sector aligned and inside the flash")
        self.flash.erase(offset, size)
        self._reply(op)

    def _read_flash(self, op: int, data: bytes, checksum: int) -> None:
        offset, length, block_size, max_in_flight = struct.unpack_from("<IIII", data)
        if offset + length > self.flash.size or block_size == 0 or max_in_flight == 0:
            raise _Failure(STUB_BAD_DATA_LEN, "bad READ_FLASH parameters")
        self._reply(op)
        digest = hashlib.md5()
        sent = acked = 0
        while acked < length:
            while sent < length and sent - acked < block_size * max_in_flight:
                block = self.flash.read(offset + sent, min(block_size, length - sent))
                digest.update(block)
                self._send(block)
                sent += len(block)
            ack = self._next_packet(timeout=_ACK_TIMEOUT_S)
            if ack is None:
                if self._stop.is_set():
                    raise _Exit(RomExit.STOPPED)
                return  # esptool went away mid-read: drop the transfer like the stub would
            if len(ack) == 4:
                acked = max(acked, struct.unpack("<I", ack)[0])
        self._send(digest.digest())

    def _run_user_code(self, op: int, data: bytes, checksum: int) -> None:
        raise _Exit(RomExit.RUN_APP)  # the stub sends no reply: it jumps to the app
