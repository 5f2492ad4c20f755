"""Build the firmware's portable C services for the host, on demand, into a content-addressed cache.

The virtual board runs `firmware/services` compiled by the system C compiler instead of stand-ins, so
the firmware's own service code is exercised on every run. Builds land in
``$HIL_CACHE_DIR`` (default ``~/.cache/esp-smoltcp-hil/cbuild``) under a directory named by a hash of
the sources, the compiler's identity and the flags: unchanged sources are never rebuilt, and two
processes building at once each compile into a private temporary directory and atomically rename it
into place (the loser discards its copy).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, MissingToolError
from harness.paths import firmware_dir

CFLAGS: tuple[str, ...] = ("-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-pthread")
# The sanitizer build of the services program (tests run it under their real clients).
SANITIZE_FLAGS: tuple[str, ...] = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                                   "-fno-omit-frame-pointer", "-g", "-O1")  # fmt: skip
# mbedTLS (Debian: libmbedtls-dev) for HTTPS, `tls get` and mqtts://; linked statically by name only.
LDLIBS: tuple[str, ...] = ("-lmbedtls", "-lmbedx509", "-lmbedcrypto")
COMPILE_TIMEOUT_S = 120
SERVICES_BINARY = "hil-services"
SANITIZED_SERVICES_BINARY = "hil-services-asan"
C_TESTS_BINARY = "hil-services-tests"
# Sources shared by the services binary and the C tests; the FreeRTOS platform is for ESP-IDF only.
_LIBRARY_SOURCES = (
    "src/hil_proto.c",
    "src/mini_json.c",
    "src/net_util.c",
    "src/select_echo.c",
    "src/echo.c",
    "src/iperf3_server.c",
    "src/hooks.c",
    "src/digest.c",
    "src/ws_codec.c",
    "src/http_codec.c",
    "src/mqtt_codec.c",
    "src/dl_pattern.c",
    "src/conn.c",
    "src/tls.c",
    "src/httpd.c",
    "src/tls_get.c",
    "src/mqtt_client.c",
    "src/mcast.c",
    "src/loopback.c",
    "src/l2echo.c",
    "src/commands.c",
    "platform/posix.c",
)


@dataclass(frozen=True)
class _Target:
    name: str
    sources: tuple[Path, ...]
    headers: tuple[Path, ...]
    vectors: Path | None  # generate protocol_vectors.h from this file
    extra_flags: tuple[str, ...] = ()


def services_dir() -> Path:
    """The firmware's portable C services (`firmware/services`)."""
    return firmware_dir() / "services"


def vectors_file() -> Path:
    """The protocol's golden vectors (`firmware/protocol_vectors.json`)."""
    return firmware_dir() / "protocol_vectors.json"


def cache_root() -> Path:
    """The directory holding all cached builds (``$HIL_CACHE_DIR`` or ``~/.cache/esp-smoltcp-hil/cbuild``)."""
    override = os.environ.get("HIL_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "esp-smoltcp-hil" / "cbuild"


def find_compiler() -> str:
    """The C compiler to use: ``$CC`` or ``cc``, as an absolute path.

    Raises:
        MissingToolError: no such compiler on PATH.
    """
    name = os.environ.get("CC", "cc")
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(
            f"no C compiler '{name}' found on PATH: the virtual board builds firmware/services with it. "
            "Install one (Debian: apt-get install gcc) or point the CC environment variable at one."
        )
    return path


def _compiler_identity(compiler: str) -> str:
    try:
        result = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingToolError(f"the C compiler {compiler} does not run ({exc}); install gcc or set CC") from exc
    return f"{os.path.realpath(compiler)}\n{result.stdout}"


def _services_files() -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    services = services_dir()
    if not services.is_dir():
        raise ConfigError(f"firmware sources not found at {services}: reinstall the package or use a checkout")
    sources = tuple(services / rel for rel in _LIBRARY_SOURCES)
    headers = tuple(
        sorted((services / "include").glob("*.h"))
        + sorted((services / "src").glob("*.h"))
        + sorted((services / "host").glob("*.h"))
    )
    return sources, headers


def _digest(target: _Target, compiler_id: str, flags: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(target.name.encode())
    h.update(compiler_id.encode())
    h.update("\0".join(flags).encode())
    inputs = [*target.sources, *target.headers]
    if target.vectors is not None:
        inputs += [target.vectors, services_dir() / "tests" / "gen_vectors.py"]
    for path in inputs:
        root = firmware_dir()  # names relative to it: a checkout and an installed wheel share builds
        h.update(str(path.relative_to(root) if path.is_relative_to(root) else path).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:24]


def _compile(target: _Target, compiler: str, flags: Sequence[str], out_dir: Path) -> None:
    include_dirs = [services_dir() / "include", services_dir() / "src", services_dir() / "host", out_dir]
    if target.vectors is not None:
        gen = subprocess.run(
            [
                sys.executable,
                str(services_dir() / "tests" / "gen_vectors.py"),
                str(target.vectors),
                str(out_dir / "protocol_vectors.h"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if gen.returncode != 0:
            raise ConfigError(f"cannot generate C vectors from {target.vectors}:\n{gen.stderr.strip()}")
    cmd = [
        compiler,
        *flags,
        *(f"-I{d}" for d in include_dirs),
        *(str(s) for s in target.sources),
        *LDLIBS,
        "-o",
        str(out_dir / target.name),
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MissingToolError(f"compiling {target.name} took longer than {COMPILE_TIMEOUT_S} s") from exc
    if result.returncode != 0 and "mbedtls/" in result.stderr and "No such file" in result.stderr:
        raise MissingToolError(
            f"compiling {target.name} needs the mbedTLS headers and libraries: apt-get install libmbedtls-dev "
            "(ci/install.sh installs it)"
        )
    if result.returncode != 0:
        raise ConfigError(
            f"compiling {target.name} failed (warnings are errors):\n{result.stderr.strip()}\ncommand: {' '.join(cmd)}"
        )


def _build(target: _Target) -> Path:
    compiler = find_compiler()
    flags = (*CFLAGS, *target.extra_flags)
    digest = _digest(target, _compiler_identity(compiler), flags)
    final_dir = cache_root() / f"{target.name}-{digest}"
    binary = final_dir / target.name
    if binary.is_file():
        return binary
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=final_dir.parent))
    try:
        _compile(target, compiler, flags, tmp_dir)
        try:
            tmp_dir.rename(final_dir)
        except OSError:
            # Another process finished the same build first; its result is identical.
            if not binary.is_file():
                raise
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return binary


def build_services(sanitize: bool = False) -> Path:
    """Build (or reuse) the ``hil-services`` host binary and return its path.

    Args:
        sanitize: build with AddressSanitizer and UndefinedBehaviorSanitizer (any report aborts it).

    Raises:
        MissingToolError: no C compiler, or no mbedTLS.
        ConfigError: the sources are missing or do not compile.
    """
    sources, headers = _services_files()
    host = tuple(services_dir() / "host" / name for name in ("hil_services_main.c", "program.c", "linux_stats.c"))
    if sanitize:
        return _build(_Target(SANITIZED_SERVICES_BINARY, (*sources, *host), headers, None, SANITIZE_FLAGS))
    return _build(_Target(SERVICES_BINARY, (*sources, *host), headers, None))


def build_c_tests(vectors: Path | None = None, sanitize: bool = False) -> Path:
    """Build (or reuse) the C unit tests, checking the golden vectors, and return the binary's path.

    Args:
        vectors: the vectors file to compile in; the repository's firmware/protocol_vectors.json
            by default.
        sanitize: build with AddressSanitizer and UndefinedBehaviorSanitizer (any report aborts it).

    Raises:
        MissingToolError: no C compiler, or no mbedTLS.
        ConfigError: the sources or vectors are missing or do not compile.
    """
    vectors = (vectors or vectors_file()).resolve()
    if not vectors.is_file():
        raise ConfigError(f"golden vectors file {vectors} not found")
    sources, headers = _services_files()
    tests = tuple(services_dir() / "tests" / name for name in ("test_main.c", "test_codecs.c"))
    test_headers = (*headers, services_dir() / "tests" / "check.h")
    name = f"{C_TESTS_BINARY}-asan" if sanitize else C_TESTS_BINARY
    flags = SANITIZE_FLAGS if sanitize else ()
    return _build(_Target(name, (*sources, *tests), test_headers, vectors, flags))
