"""Build the virtual board's native firmware (firmware/host) on demand, into cbuild.py's content-addressed cache.

Two flavours of one program, ``hil-firmware``, from the same sources:

- ``smoltcp``: the Rust crate firmware/host/stack (smoltcp 0.12, built by cargo as a staticlib), the C
  runtime (poll thread, AF_PACKET, frame pool, heap budget) and the BSD-socket shim, linked with
  ``--wrap`` so firmware/services runs unchanged on smoltcp;
- ``linux``: the same services on the kernel's sockets (the control arm).

Plus the shim's C tests (``hil-shim-tests``) and AddressSanitizer/UBSan variants of both (sanitize=True:
the crate's debug profile, the C at -O1 with ``-fsanitize=address,undefined``, no heap budget since ASan
owns malloc). A build is reused while its inputs (sources, Cargo.lock, compiler and cargo identity, flags)
are unchanged; concurrent builders are safe (cargo locks its target directory; each link happens in a
private directory renamed into place).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.boards.virtual.cbuild import (
    _LIBRARY_SOURCES,
    CFLAGS,
    COMPILE_TIMEOUT_S,
    LDLIBS,
    _compiler_identity,
    cache_root,
    find_compiler,
    services_dir,
)
from harness.errors import ConfigError, MissingToolError
from harness.paths import firmware_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HOST_DIR = firmware_dir() / "host"
SERVICES_DIR = services_dir()
CRATE_DIR = HOST_DIR / "stack"
FIRMWARE_BINARY = "hil-firmware"
SHIM_TESTS_BINARY = "hil-shim-tests"
FLAVOURS = ("smoltcp", "linux")
CARGO_TIMEOUT_S = 900
# The calls the shim takes over (firmware/host/shim/sockshim.c defines __wrap_<call> for each).
WRAPPED_CALLS = (
    "socket", "bind", "listen", "accept", "accept4", "connect", "send", "recv", "sendto", "recvfrom", "read",
    "write", "close", "shutdown", "select", "poll", "setsockopt", "getsockopt", "getsockname", "getpeername",
    "fcntl", "ioctl", "getaddrinfo", "freeaddrinfo",
)  # fmt: skip
# What the Rust staticlib needs from the system (rustc --print native-static-libs on x86_64 Linux).
RUST_NATIVE_LIBS = ("-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined")
_RUNTIME = ("runtime/netstack.c", "shim/sockshim.c", "shim/loopback.c")
_INCLUDES = ("include", "runtime", "shim")


@dataclass(frozen=True)
class _Link:
    name: str
    sources: tuple[Path, ...]
    flags: tuple[str, ...]
    rust_profile: str | None  # cargo profile of the crate to link, None: no Rust


def msrv() -> str:
    """The crate's minimum Rust version (``rust-version`` in firmware/host/stack/Cargo.toml)."""
    manifest = tomllib.loads((CRATE_DIR / "Cargo.toml").read_text())
    return str(manifest["package"]["rust-version"])


def smoltcp_version() -> str:
    """The smoltcp version the crate is locked to (from Cargo.lock), e.g. ``0.12.0``."""
    lock = tomllib.loads((CRATE_DIR / "Cargo.lock").read_text())
    for package in lock.get("package", []):
        if package.get("name") == "smoltcp":
            return str(package["version"])
    raise ConfigError(f"smoltcp is not in {CRATE_DIR / 'Cargo.lock'}")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def find_cargo() -> tuple[str, str]:
    """cargo's path and ``cargo --version`` line, checked against the crate's MSRV.

    Raises:
        MissingToolError: no cargo, or one older than the MSRV; the message names the fix.
    """
    fix = (
        "install a current Rust toolchain: run `ci/install.sh` (it installs rustup's minimal profile) "
        "or `rustup update stable`; Debian 12's own cargo (1.63) is too old"
    )
    rustup_cargo = Path.home() / ".cargo" / "bin" / "cargo"  # rustup's, when its PATH line is not loaded
    cargo = shutil.which("cargo") or (str(rustup_cargo) if rustup_cargo.is_file() else None)
    if cargo is None:
        raise MissingToolError(f"no cargo found: the virtual board's smoltcp firmware is Rust; {fix}")
    try:
        version = subprocess.run([cargo, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise MissingToolError(f"{cargo} --version failed ({exc}); {fix}") from exc
    found = re.search(r"cargo (\d+\.\d+\.\d+)", version)
    if found is None or _version_tuple(found.group(1)) < _version_tuple(msrv()):
        raise MissingToolError(f"{version.strip() or cargo} is older than the crate's Rust {msrv()}; {fix}")
    return cargo, version.strip()


def _cargo_target_dir() -> Path:
    return cache_root() / "cargo-target"


def build_stack_lib(profile: str = "release") -> Path:
    """Build (or let cargo reuse) the crate's staticlib; returns ``libhil_stack.a``.

    Args:
        profile: ``release`` (the glue's profile) or ``dev`` (debug, for the sanitizer builds).

    Raises:
        MissingToolError: cargo missing or too old.
        ConfigError: the crate does not build.
    """
    cargo, _ = find_cargo()
    target = _cargo_target_dir()
    cmd = [cargo, "build", "--locked", "--lib", "--profile", profile, "--manifest-path", str(CRATE_DIR / "Cargo.toml")]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=CARGO_TIMEOUT_S, check=False, env=cargo_env()
        )
    except subprocess.TimeoutExpired as exc:
        raise MissingToolError(f"cargo build took longer than {CARGO_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise ConfigError(
            f"building firmware/host/stack failed:\n{done.stderr.strip()[-4000:]}\ncommand: {' '.join(cmd)}"
        )
    return target / ("debug" if profile == "dev" else profile) / "libhil_stack.a"


def _crate_inputs() -> list[Path]:
    return [CRATE_DIR / "Cargo.toml", CRATE_DIR / "Cargo.lock", *sorted((CRATE_DIR / "src").rglob("*.rs"))]


def _digest(link: _Link, identity: str) -> str:
    h = hashlib.sha256()
    h.update(link.name.encode())
    h.update(identity.encode())
    h.update("\0".join(link.flags).encode())
    headers = sorted(HOST_DIR.rglob("*.h")) + sorted(SERVICES_DIR.rglob("*.h"))
    inputs = [*link.sources, *headers, *(_crate_inputs() if link.rust_profile else [])]
    for path in inputs:
        h.update(str(path.relative_to(firmware_dir())).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:24]


def _link(link: _Link) -> Path:
    compiler = find_compiler()
    identity = _compiler_identity(compiler)
    if link.rust_profile:
        identity += find_cargo()[1]
    final_dir = cache_root() / f"{link.name}-{_digest(link, identity)}"
    binary = final_dir / FIRMWARE_BINARY if link.name.startswith(FIRMWARE_BINARY) else final_dir / link.name
    if binary.is_file():
        return binary
    archive = build_stack_lib(link.rust_profile) if link.rust_profile else None
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{link.name}-", dir=final_dir.parent))
    try:
        includes = [f"-I{HOST_DIR / d}" for d in _INCLUDES] + [
            f"-I{SERVICES_DIR / 'include'}",
            f"-I{SERVICES_DIR / 'src'}",
        ]
        rust = [str(archive), *RUST_NATIVE_LIBS] if archive else []
        cmd = [
            compiler,
            *link.flags,
            *includes,
            *(str(s) for s in link.sources),
            *rust,
            *LDLIBS,
            "-o",
            str(tmp_dir / binary.name),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise MissingToolError(f"compiling {link.name} took longer than {COMPILE_TIMEOUT_S} s") from exc
        if done.returncode != 0:
            raise ConfigError(f"compiling {link.name} failed (warnings are errors):\n{done.stderr.strip()}\n"
                              f"command: {' '.join(cmd)}")  # fmt: skip
        try:
            tmp_dir.rename(final_dir)
        except OSError:
            if not binary.is_file():  # another process finished the same build first
                raise
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return binary


def _flags(native: bool, sanitize: bool) -> tuple[str, ...]:
    flags: list[str] = [f for f in CFLAGS if not (sanitize and f.startswith("-O"))]
    if sanitize:
        flags += ["-O1", "-g", *SANITIZE_FLAGS]
    if native:
        flags += ["-DHIL_NATIVE_STACK", *(f"-Wl,--wrap={call}" for call in WRAPPED_CALLS)]
    return tuple(flags)


def _native_sources(sanitize: bool) -> tuple[Path, ...]:
    # ASan owns malloc: the heap budget's replacement malloc stays out of sanitizer builds.
    runtime = (*_RUNTIME, *(() if sanitize else ("runtime/heap.c",)))
    return (*(SERVICES_DIR / s for s in _LIBRARY_SOURCES), *(HOST_DIR / s for s in runtime))


def build_firmware(flavour: str = "smoltcp", sanitize: bool = False) -> Path:
    """Build (or reuse) ``hil-firmware`` and return its path.

    Args:
        flavour: ``smoltcp`` (the stack under test) or ``linux`` (the kernel's stack, the control arm).
        sanitize: an AddressSanitizer/UBSan build.

    Raises:
        MissingToolError: no C compiler, or (smoltcp) no usable cargo.
        ConfigError: unknown flavour, or the sources do not build.
    """
    if flavour not in FLAVOURS:
        raise ConfigError(f"unknown firmware flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}")
    native = flavour == "smoltcp"
    main = HOST_DIR / "app" / "hil_firmware_main.c"
    sources = (*_native_sources(sanitize), main) if native else (*(SERVICES_DIR / s for s in _LIBRARY_SOURCES), main)
    name = f"{FIRMWARE_BINARY}-{flavour}{'-asan' if sanitize else ''}"
    return _link(_Link(name, sources, _flags(native, sanitize), ("dev" if sanitize else "release") if native else None))


def build_shim_tests(sanitize: bool = False) -> Path:
    """Build (or reuse) the shim's C tests (firmware/host/tests/shim_tests.c) and return the binary."""
    sources = (*_native_sources(sanitize), HOST_DIR / "tests" / "shim_tests.c")
    name = f"{SHIM_TESTS_BINARY}{'-asan' if sanitize else ''}"
    return _link(_Link(name, sources, _flags(True, sanitize), "dev" if sanitize else "release"))


def cargo_command(*args: str) -> Sequence[str]:
    """A cargo command on the crate, with the cache's target directory (for `cargo test`/`clippy`)."""
    cargo, _ = find_cargo()
    subcommand, *rest = args
    return [cargo, subcommand, "--manifest-path", str(CRATE_DIR / "Cargo.toml"), *rest]


def cargo_env() -> dict[str, str]:
    """The environment for `cargo_command`: the cached target directory."""
    return {**os.environ, "CARGO_TARGET_DIR": str(_cargo_target_dir())}
