"""Build firmware/hil_app with ESP-IDF's idf.py, only when a source is newer than the build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness.errors import HilError, MissingToolError
from harness.firmware import footprint
from harness.paths import firmware_dir

APP_DIR = firmware_dir() / "hil_app"
TARGET = "esp32p4"
# Directories whose files go into the image besides the app itself.
EXTRA_SOURCE_DIRS = ("services", "certs")
# Generated or downloaded inside the app directory: never a reason to rebuild.
_NOT_SOURCES = {"build", "managed_components", "dependencies.lock", "sdkconfig", "sdkconfig.old", "__pycache__"}
_BUILD_STAMP = "hil_app.bin"
STACKS = ("smoltcp", "lwip")
# Most P4-Nano boards sold so far carry v1.x silicon; a v3.x board says so in hil.toml or with --chip-rev.
DEFAULT_CHIP_REV = "v1.0"
_VERSION_LINE = re.compile(r"set\(IDF_VERSION_(MAJOR|MINOR)\s+(\d+)\)")


class BuildError(HilError):
    """idf.py ran and failed; the message carries the tail of its output."""


def require_idf(env: dict[str, str] | None = None) -> str:
    """Return the path of idf.py, or raise MissingToolError naming everything that is missing.

    Args:
        env: the environment to inspect (default: os.environ).
    """
    env = dict(os.environ if env is None else env)
    missing = []
    idf_path = env.get("IDF_PATH", "")
    if not idf_path:
        missing.append("IDF_PATH is not set")
    elif not (Path(idf_path) / "tools" / "idf.py").is_file():
        missing.append(f"IDF_PATH={idf_path} has no tools/idf.py")
    idf_py = shutil.which("idf.py", path=env.get("PATH", ""))
    if not idf_py:
        missing.append("idf.py is not on PATH")
    cargo_home = Path(env.get("CARGO_HOME", Path(env.get("HOME", "~")).expanduser() / ".cargo"))
    if not shutil.which("rustup", path=env.get("PATH", "")) and not (cargo_home / "bin" / "rustup").exists():
        missing.append("rustup is not installed (the esp_smoltcp_glue Rust crate needs its pinned nightly)")
    if missing:
        raise MissingToolError(
            "cannot build firmware/hil_app: "
            + "; ".join(missing)
            + ". Install ESP-IDF v5.5 or v6.0 and rustup, then run `. $IDF_PATH/export.sh` in this shell "
            "(or use the virtual board, which needs no build)."
        )
    assert idf_py is not None
    return idf_py


def idf_version(idf_path: Path) -> tuple[int, int]:
    """(major, minor) of the ESP-IDF checkout at ``idf_path``, from its tools/cmake/version.cmake."""
    path = Path(idf_path) / "tools" / "cmake" / "version.cmake"
    try:
        found = dict(_VERSION_LINE.findall(path.read_text(encoding="utf-8")))
        return int(found["MAJOR"]), int(found["MINOR"])
    except (OSError, KeyError, ValueError) as exc:
        raise MissingToolError(f"cannot read the ESP-IDF version from {path}: {exc}") from exc


def chip_rev_below_v3(chip_rev: str) -> bool:
    """`v1.0` -> True, `v3.1` -> False (v0.x/v1.x and v3.x silicon need different builds)."""
    match = re.fullmatch(r"v?(\d+)\.(\d{1,2})", chip_rev.strip())
    if not match:
        raise HilError(f"chip revision {chip_rev!r} is not of the form v<major>.<minor>, e.g. v1.0 or v3.1")
    return int(match.group(1)) < 3


def variant_defaults(version: tuple[int, int], chip_rev: str, stack: str = "smoltcp") -> list[str]:
    """The sdkconfig defaults files of the variant for this ESP-IDF version, chip revision and stack.

    The supported matrix (firmware/hil_app/README.md): esp-smoltcp 0.2 on ESP-IDF >= 6.0, 0.1 (VFS select
    off) on 5.5; idf_component.yml resolves the matching component versions itself.
    """
    if stack not in STACKS:
        raise HilError(f"unknown stack {stack!r}: choose one of {', '.join(STACKS)}")
    if version < (5, 5):
        raise HilError(f"ESP-IDF v{version[0]}.{version[1]} is not supported: hil_app needs v5.5 or v6.0")
    files = ["sdkconfig.defaults"]
    if chip_rev_below_v3(chip_rev):
        files.append("sdkconfig.defaults.rev_lt_v3")
    if stack == "lwip":
        files.append("sdkconfig.defaults.lwip")
    elif version < (6, 0):
        files.append("sdkconfig.defaults.smoltcp_v0_1")
    return files


def variant_build_dir(app_dir: Path, version: tuple[int, int], chip_rev: str, stack: str) -> Path:
    """One build directory per variant, so switching never reuses another variant's sdkconfig."""
    rev = "rev_lt_v3" if chip_rev_below_v3(chip_rev) else "rev_v3"
    return app_dir / f"build-idf{version[0]}.{version[1]}-{rev}-{stack}"


def source_files(app_dir: Path = APP_DIR, extra_dirs: Iterable[Path] | None = None) -> list[Path]:
    """Every file that goes into the image: the app (minus generated files) and the extra dirs."""
    if extra_dirs is None:
        extra_dirs = [app_dir.parent / name for name in EXTRA_SOURCE_DIRS]
    files = []
    for root in [app_dir, *extra_dirs]:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            relative = path.relative_to(root).parts
            if root == app_dir and (relative[0] in _NOT_SOURCES or relative[0].startswith("build")):
                continue
            if path.is_file() and "__pycache__" not in relative:
                files.append(path)
    return files


def is_stale(build_dir: Path, sources: Sequence[Path]) -> bool:
    """True when the build's image is missing or older than any source."""
    stamp = build_dir / _BUILD_STAMP
    if not stamp.is_file():
        return True
    built = stamp.stat().st_mtime
    return any(path.stat().st_mtime > built for path in sources)


def build_command(
    idf_py: str, app_dir: Path, build_dir: Path, sdkconfig_defaults: Sequence[str] | None = None
) -> list[str]:
    """The idf.py command line; the sdkconfig lives in the build dir so variants never mix."""
    command = [idf_py, "-C", str(app_dir), "-B", str(build_dir), "-D", f"IDF_TARGET={TARGET}"]
    command += ["-D", f"SDKCONFIG={build_dir / 'sdkconfig'}"]
    if sdkconfig_defaults:
        command += ["-D", "SDKCONFIG_DEFAULTS=" + ";".join(sdkconfig_defaults)]
    return [*command, "build"]


def build_app(
    app_dir: Path = APP_DIR,
    build_dir: Path | None = None,
    sdkconfig_defaults: Sequence[str] | None = None,
    force: bool = False,
    timeout_s: float = 3600,
) -> Path:
    """Build the app for esp32p4 if needed, size it, and return the build directory for flashing.

    The per-archive sizes (`harness.firmware.footprint`) are written to ``size-components.json`` in the
    build directory whenever the image is newer than them.

    Args:
        app_dir: the ESP-IDF project.
        build_dir: where to build (default: ``<app_dir>/build``).
        sdkconfig_defaults: defaults files relative to ``app_dir``, e.g.
            ``["sdkconfig.defaults", "sdkconfig.defaults.rev_lt_v3"]``.
        force: build even when nothing changed.
        timeout_s: give up after this long (a first build downloads components and compiles Rust).

    Raises:
        MissingToolError: ESP-IDF or rustup is not available.
        BuildError: idf.py failed or timed out.
    """
    build_dir = (build_dir or app_dir / "build").resolve()
    idf_py = require_idf()
    if force or is_stale(build_dir, source_files(app_dir)):
        _run_idf_py(build_command(idf_py, app_dir, build_dir, sdkconfig_defaults), timeout_s)
        if not (build_dir / _BUILD_STAMP).is_file():
            raise BuildError(f"idf.py build succeeded but {build_dir / _BUILD_STAMP} is missing")
    size_file = build_dir / footprint.SIZE_FILE
    if not size_file.is_file() or size_file.stat().st_mtime < (build_dir / _BUILD_STAMP).stat().st_mtime:
        _run_idf_py(footprint.size_components_command(idf_py, app_dir, build_dir), timeout_s)
    return build_dir


def _run_idf_py(command: Sequence[str], timeout_s: float) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"idf.py did not finish within {timeout_s:.0f} s: {' '.join(command)}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise BuildError(f"idf.py failed (exit {result.returncode}): {' '.join(command)}\n{tail}")
