"""The firmware's static footprint per archive, from esp-idf-size's JSON and the stack's share of it.

`hil build` writes ``size-components.json`` into the build directory with
``idf.py size-components --format json2 --output-file ...`` (esp-idf-size's ``--archives`` view). That
JSON maps each linked archive (its path as the linker saw it) to::

    {"abbrev_name": "liblwip.a", "size": ..., "size_diff": ...,
     "memory_types": {"<memory type>": {
         "size": ..., "size_diff": ...,
         "sections": {"<section>": {"size": ..., "size_diff": ..., "abbrev_name": ".text"}}}}}

Memory types are the chip's (ESP32-P4: ``Flash``, ``DIRAM``, ``HP core RAM``, ``LP RAM``, ``External RAM``; chips with
split caches: ``Flash Code``, ``Flash Data``); ``abbrev_name`` is the section's short name (``.text``,
``.rodata``, ``.data``, ``.bss``...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.errors import HilError

SIZE_FILE = "size-components.json"
# The TCP/IP stack's archives: esp-smoltcp's components (as managed components they are named
# datanoisetv__<name>), the Rust staticlib of the glue, and lwIP (the whole stack of the lwIP build; in the
# smoltcp build whatever of it still links).
STACK_ARCHIVE = re.compile(r"lib(?:datanoisetv__)?(?:esp_smoltcp\w*|smoltcp_glue|lwip)\.a")
# External RAM is heap, not the static internal RAM a build pre-pays.
_EXTERNAL_RAM = re.compile(r"psram|ext", re.IGNORECASE)


class FootprintError(HilError):
    """A size file that is not esp-idf-size's per-archive JSON."""


@dataclass(frozen=True)
class Footprint:
    """Static sizes in bytes, summed over some archives.

    Attributes:
        flash_code: ``.text`` in flash.
        flash_data: everything else in flash (``.rodata``, ``.appdesc``, ``.init_array``...).
        iram_code: ``.text`` placed in internal RAM (IRAM, TCM).
        dram_data: ``.data`` in internal RAM (also takes flash for its initial values: counted here only).
        dram_bss: ``.bss`` in internal RAM.
    """

    flash_code: int = 0
    flash_data: int = 0
    iram_code: int = 0
    dram_data: int = 0
    dram_bss: int = 0

    @property
    def static_ram(self) -> int:
        """Internal RAM the build occupies before the heap gets any."""
        return self.iram_code + self.dram_data + self.dram_bss

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        """Every size by name, with ``static_ram``."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "static_ram": self.static_ram}


@dataclass(frozen=True)
class FirmwareFootprint:
    """A build's footprint: each archive's, and the TCP/IP stack's archives summed."""

    archives: dict[str, Footprint]

    @property
    def stack_archives(self) -> list[str]:
        """The archives counted as the stack (short names, sorted)."""
        return sorted(name for name in self.archives if STACK_ARCHIVE.fullmatch(name))

    @property
    def stack(self) -> Footprint:
        """The stack's archives summed."""
        return sum((self.archives[name] for name in self.stack_archives), Footprint())

    @property
    def image(self) -> Footprint:
        """All archives summed (the linker map's objects outside archives are not in this view)."""
        return sum(self.archives.values(), Footprint())

    def metrics(self) -> dict[str, int]:
        """Run metrics in bytes: ``stack_<size>`` and ``image_<size>`` for every size of `Footprint`."""
        return {
            **{f"stack_{name}": value for name, value in self.stack.as_dict().items()},
            **{f"image_{name}": value for name, value in self.image.as_dict().items()},
        }


def archive_footprint(memory_types: Mapping[str, Any]) -> Footprint:
    """One archive's `Footprint` from its ``memory_types`` entry."""
    totals = {f.name: 0 for f in fields(Footprint)}
    for memory_type, info in memory_types.items():
        flash = memory_type.lower().startswith("flash")
        if not flash and _EXTERNAL_RAM.search(memory_type):
            continue
        for section in info["sections"].values():
            size, short = int(section["size"]), section["abbrev_name"]
            if flash:
                totals["flash_code" if short == ".text" else "flash_data"] += size
            elif short == ".text":
                totals["iram_code"] += size
            elif short == ".data":
                totals["dram_data"] += size
            elif short == ".bss":
                totals["dram_bss"] += size
    return Footprint(**totals)


def parse_size_components(data: Mapping[str, Any]) -> FirmwareFootprint:
    """Read esp-idf-size's per-archive JSON (``size-components --format json2``).

    Raises:
        FootprintError: the data does not have that shape (e.g. the summary view without ``--archives``).
    """
    if not isinstance(data, Mapping) or "layout" in data:
        raise FootprintError("not esp-idf-size's per-archive JSON: run `idf.py size-components --format json2`")
    archives: dict[str, Footprint] = {}
    for path, entry in data.items():
        try:
            name = entry.get("abbrev_name") or Path(path).name
            archives[name] = archives.get(name, Footprint()) + archive_footprint(entry["memory_types"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise FootprintError(f"archive {path!r}: not in esp-idf-size's json2 shape ({exc!r})") from exc
    return FirmwareFootprint(archives)


def read_footprint(build_dir: Path) -> FirmwareFootprint | None:
    """The footprint `hil build` saved in ``build_dir``, or None when the build has none.

    Raises:
        FootprintError: the file exists but cannot be read as esp-idf-size's per-archive JSON.
    """
    path = build_dir / SIZE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FootprintError(f"{path}: {exc}") from exc
    return parse_size_components(data)


def size_components_command(idf_py: str, app_dir: Path, build_dir: Path) -> list[str]:
    """The idf.py command that writes ``build_dir/size-components.json`` for a finished build."""
    return [idf_py, "-C", str(app_dir), "-B", str(build_dir), "size-components", "--format", "json2",
            "--output-file", str(build_dir / SIZE_FILE)]  # fmt: skip


def describe(footprint: FirmwareFootprint, archives: Iterable[str] | None = None) -> str:
    """One line per archive (default: the stack's): flash code/data and static RAM in bytes."""
    lines = []
    for name in archives if archives is not None else footprint.stack_archives:
        sizes = footprint.archives[name]
        lines.append(
            f"{name}: flash code {sizes.flash_code}, flash data {sizes.flash_data}, "
            f"IRAM {sizes.iram_code}, .data {sizes.dram_data}, .bss {sizes.dram_bss}"
        )
    return "\n".join(lines)
