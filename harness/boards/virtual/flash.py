"""A file-backed SPI NOR flash for the virtual ESP32-P4 (16 MB, erased bytes read 0xFF).

The backing file stores every byte inverted (``~b``): a hole in a sparse file reads as zeros, which
therefore means "erased" (0xFF), so a fresh 16 MB flash costs no disk space and an erase can be a plain
zero write. Programming follows NOR rules (bits can only go from 1 to 0, ``new = old & data``), so a
flasher that forgets to erase gets the same corrupted result it would get on a real chip.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from harness.errors import BoardError, ConfigError

FLASH_SIZE = 16 * 1024 * 1024
SECTOR_SIZE = 0x1000
FLASH_FILE_NAME = "spi_flash.inverted.bin"

_INVERT = bytes(255 - b for b in range(256))
_CHUNK = 1 << 20


def _invert(data: bytes) -> bytes:
    return data.translate(_INVERT)


class SpiFlash:
    """A 16 MB SPI NOR flash kept in ``<flash_dir>/spi_flash.inverted.bin`` (bytes stored inverted).

    Args:
        flash_dir: Directory of one virtual board; created if missing. Contents persist across runs.
        size: Flash size in bytes (a multiple of the 4 KB sector).
    """

    def __init__(self, flash_dir: str | os.PathLike[str], size: int = FLASH_SIZE) -> None:
        if size <= 0 or size % SECTOR_SIZE:
            raise ConfigError(f"flash size {size} is not a positive multiple of {SECTOR_SIZE}; use e.g. 16 MiB")
        self.size = size
        self.path = Path(flash_dir) / FLASH_FILE_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the virtual flash file {self.path}: {exc}; pick a writable --flash-dir"
            ) from exc
        current = os.fstat(self._fd).st_size
        if current not in (0, size):
            os.close(self._fd)
            raise ConfigError(
                f"{self.path} holds {current} bytes but the flash is {size} bytes; delete the file to start erased"
            )
        if current == 0:
            os.ftruncate(self._fd, size)  # sparse: every byte reads as erased

    def close(self) -> None:
        """Close the backing file (further access raises)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SpiFlash:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise BoardError(
                f"flash access 0x{offset:x}+0x{length:x} is outside the {self.size // (1024 * 1024)} MB flash"
            )

    def read(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` (erased bytes read 0xFF)."""
        self._check_range(offset, length)
        return _invert(os.pread(self._fd, length, offset))

    def write(self, offset: int, data: bytes) -> None:
        """Program ``data`` at ``offset`` with NOR semantics: each stored bit becomes ``old AND new``."""
        self._check_range(offset, len(data))
        for start in range(0, len(data), _CHUNK):
            piece = data[start : start + _CHUNK]
            where = offset + start
            old_inv = os.pread(self._fd, len(piece), where)
            # In the inverted store, AND of the true bits is OR of the inverted bits.
            new_inv = int.from_bytes(old_inv, "little") | int.from_bytes(_invert(piece), "little")
            os.pwrite(self._fd, new_inv.to_bytes(len(piece), "little"), where)

    def erase(self, offset: int, length: int) -> None:
        """Erase every sector touched by ``[offset, offset + length)``, like a ROM erasing a write region."""
        if length == 0:
            return
        start = offset - offset % SECTOR_SIZE
        end = -(-(offset + length) // SECTOR_SIZE) * SECTOR_SIZE
        self._check_range(start, end - start)
        zeros = bytes(min(_CHUNK, end - start))
        for where in range(start, end, _CHUNK):
            os.pwrite(self._fd, zeros[: min(_CHUNK, end - where)], where)

    def erase_all(self) -> None:
        """Erase the whole chip (and give the disk space back)."""
        os.ftruncate(self._fd, 0)
        os.ftruncate(self._fd, self.size)

    def md5(self, offset: int, length: int) -> bytes:
        """MD5 digest of a region, as the ROM's SPI_FLASH_MD5 command computes it."""
        self._check_range(offset, length)
        digest = hashlib.md5()
        for where in range(offset, offset + length, _CHUNK):
            digest.update(self.read(where, min(_CHUNK, offset + length - where)))
        return digest.digest()
