"""`hil virtual start`, then the real esptool against its pty and its RFC2217 port; `hil virtual stop` cleans up."""

from __future__ import annotations

import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from appimage import AppDescription, build_app_image, build_bootloader_image, build_partition_table, have_cross_compiler

from harness.boards.virtual.flash import SpiFlash
from harness.boards.virtual.standalone import state_dir
from harness.lab.netns import NETNS_DIR

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the virtual board needs root (network namespaces)"),
    pytest.mark.skipif(not have_cross_compiler(), reason="needs gcc-riscv64-linux-gnu for the test app image"),
]

REPO = Path(__file__).resolve().parents[3]
TWO_MB = 2 * 1024 * 1024
APP_OFFSET = 0x10000
TIMEOUT_S = 120
DESC = AppDescription(project_name="flashed_by_esptool", version="v9.8.7-flash", idf_ver="v5.5.1")


def hil(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "harness.cli", "virtual", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=TIMEOUT_S, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def esptool(port: str, *args: str, stub: bool = True, reset: bool = False) -> subprocess.CompletedProcess:
    """The real esptool; with ``reset`` the default DTR/RTS reset and hard reset (RFC2217 only)."""
    command = [sys.executable, "-m", "esptool", "--chip", "esp32p4", "--port", port]
    if not reset:
        command += ["--before", "no-reset", "--after", "no-reset"]
    command += [*([] if stub else ["--no-stub"]), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


class Console:
    """Reads the board's pty (only while no esptool uses it)."""

    def __init__(self, port: str) -> None:
        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.text = ""

    def wait_for(self, pattern: str, timeout: float = 15, count: int = 1) -> list[re.Match]:
        deadline = time.monotonic() + timeout
        while True:
            matches = list(re.finditer(pattern, self.text))
            if len(matches) >= count:
                return matches
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} x{count} not seen within {timeout} s; console:\n{self.text[-3000:]}")
            if select.select([self.fd], [], [], min(remaining, 0.2))[0]:
                self.text += os.read(self.fd, 65536).decode(errors="replace")

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("build")
    app = build_app_image(work, DESC)
    big = work / "app-2mb.bin"
    rng = random.Random(5)
    # The app image, then 2 MB of half-compressible filler (ignored by the bootloader after the image).
    filler = b"".join(os.urandom(4096) if i % 2 else bytes([rng.randrange(256)]) * 4096 for i in range(TWO_MB // 4096))
    big.write_bytes((app.image.read_bytes() + filler)[:TWO_MB])
    return {
        "app": app,
        "big": big,
        "bootloader": build_bootloader_image(work),
        "table": build_partition_table(work / "partition-table.bin"),
    }


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory):
    name = f"t{os.getpid()}"
    info = hil("start", "--name", name, "--flash-dir", str(tmp_path_factory.mktemp("flash")))
    try:
        yield info
    finally:
        subprocess.run([sys.executable, "-m", "harness.cli", "virtual", "stop", "--name", name], cwd=REPO,
                       capture_output=True, timeout=TIMEOUT_S, check=False)  # fmt: skip
        shutil.rmtree(state_dir(name), ignore_errors=True)  # a named board keeps its state; a test's does not


def flash_bytes(board: dict, offset: int, length: int) -> bytes:
    with SpiFlash(board["flash_dir"]) as flash:
        return flash.read(offset, length)


def test_start_prints_ports_and_the_factory_app_gets_a_lease(board: dict) -> None:
    assert Path(board["port"]).exists()
    assert re.fullmatch(r"rfc2217://127\.0\.0\.1:\d+", board["rfc2217"])
    assert board["dut_ns"].startswith("hil-") and (NETNS_DIR / board["dut_ns"]).exists()
    assert board["host_ns"].startswith("hil-") and board["host_if"] == "lab0"
    assert board["dut_ip"] and board["dut_ip"].startswith("10.77.0.")
    status = hil("status", "--name", board["name"])["board"]
    assert status["state"] == "running" and status["boot_mode"] == "spi"
    assert status["last_boot"]["app"]["project_name"] == "hil_app"


def test_chip_id_over_the_pty_in_download_mode(board: dict) -> None:
    with Console(board["port"]) as console:
        assert hil("reset", "--name", board["name"], "--download")["state"] == "download"
        console.wait_for(r"rst:0x1 \(POWERON\),boot:0x307 \(DOWNLOAD\(USB/UART0/SPI\)\)\r\nwaiting for download")
    result = esptool(board["port"], "chip-id")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Connected to ESP32-P4" in result.stdout


@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom"])
@pytest.mark.parametrize("compress", ["--compress", "--no-compress"])
def test_write_flash_2mb_verifies(board: dict, built: dict, stub: bool, compress: str) -> None:
    hil("reset", "--name", board["name"], "--download")
    assert esptool(board["port"], "erase-region", hex(APP_OFFSET), hex(TWO_MB)).returncode == 0
    result = esptool(board["port"], "write-flash", compress, hex(APP_OFFSET), str(built["big"]), stub=stub)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Hash of data verified." in result.stdout
    assert flash_bytes(board, APP_OFFSET, TWO_MB) == built["big"].read_bytes()


def test_read_flash_returns_the_written_bytes(board: dict, built: dict, tmp_path: Path) -> None:
    out = tmp_path / "back.bin"
    result = esptool(board["port"], "read-flash", hex(APP_OFFSET), hex(TWO_MB), str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == built["big"].read_bytes()


def test_reset_boots_the_flashed_app(board: dict, built: dict) -> None:
    result = esptool(board["port"], "write-flash", "0x2000", str(built["bootloader"]), "0x8000", str(built["table"]))
    assert result.returncode == 0, result.stdout + result.stderr
    with Console(board["port"]) as console:
        hil("reset", "--name", board["name"])
        console.wait_for(r"rst:0x1 \(POWERON\),boot:0x30f \(SPI_FAST_FLASH_BOOT\)")
        console.wait_for(r"boot: Loaded app from partition at offset 0x10000")
        console.wait_for(r"Project name:     flashed_by_esptool")
        console.wait_for(r"App version:      v9\.8\.7-flash")
        console.wait_for(rf"ELF file SHA256:  {built['app'].elf_sha256[:16]}")
        console.wait_for(r"HIL_HELLO")
    status = hil("status", "--name", board["name"])["board"]
    assert status["state"] == "running"
    environ = Path(f"/proc/{status['app_pid']}/environ").read_bytes().split(b"\0")
    handed = json.loads(next(v for v in environ if v.startswith(b"HIL_VIRTUAL_APP=")).split(b"=", 1)[1])
    assert handed["project_name"] == "flashed_by_esptool" and handed["version"] == "v9.8.7-flash"
    assert handed["elf_sha256"] == built["app"].elf_sha256 and handed["idf_version"] == "v5.5.1"


def test_erase_flash_then_reset_loops_on_invalid_header(board: dict) -> None:
    hil("reset", "--name", board["name"], "--download")
    result = esptool(board["port"], "erase-flash")
    assert result.returncode == 0, result.stdout + result.stderr
    with Console(board["port"]) as console:
        hil("reset", "--name", board["name"])
        console.wait_for(r"invalid header: 0xffffffff", count=8)
        console.wait_for(r"rst:0x7 \(HP_SYS_HP_WDT_RESET\),boot:0x30f \(SPI_FAST_FLASH_BOOT\)", count=2)
    assert hil("status", "--name", board["name"])["board"]["state"] == "boot_loop"


def test_esptool_resets_and_flashes_over_rfc2217(board: dict, built: dict) -> None:
    # The board is in its boot loop; esptool's own DTR/RTS reset must get it into download mode.
    before = hil("status", "--name", board["name"])["board"]["boots"]
    small = [("0x2000", built["bootloader"]), ("0x8000", built["table"]), (hex(APP_OFFSET), built["app"].image)]
    args = [item for offset, path in small for item in (offset, str(path))]
    result = esptool(board["rfc2217"], "write-flash", *args, reset=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Connected to ESP32-P4" in result.stdout and "Hash of data verified." in result.stdout
    assert "Hard resetting via RTS pin" in result.stdout
    deadline = time.monotonic() + 10
    while (status := hil("status", "--name", board["name"])["board"])["state"] != "running":
        assert time.monotonic() < deadline, status
    assert status["boot_mode"] == "spi" and status["boots"] >= before + 2
    assert status["last_boot"]["app"]["project_name"] == "flashed_by_esptool"


def test_stop_leaves_nothing_behind(board: dict) -> None:
    state_dir = Path(board["control"]).parent
    hil("stop", "--name", board["name"])
    for ns in (board["dut_ns"], board["host_ns"]):
        assert not (NETNS_DIR / ns).exists()
    assert not Path(board["port"]).exists() or _pty_reused(board["port"])
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        assert str(state_dir) not in text and board["flash_dir"] not in text, text
    assert not (state_dir / "state.json").exists() and not (state_dir / "control.sock").exists()
    with pytest.raises(AssertionError, match="no virtual board"):
        hil("status", "--name", board["name"])


def _pty_reused(port: str) -> bool:
    """Another process on this busy machine may have been given the same pty number since."""
    return any(
        os.path.realpath(fd) == port for fd in Path("/proc").glob("[0-9]*/fd/*") if _safe_readlink(fd)
    )  # only true when someone holds it now; ours is gone, so the assertion above reads `not exists`


def _safe_readlink(path: Path) -> bool:
    try:
        os.readlink(path)
    except OSError:
        return False
    return True


def test_external_lab_leaves_the_cable_end_in_the_root_namespace() -> None:
    name = f"x{os.getpid()}"
    info = hil("start", "--name", name, "--external-lab")
    try:
        assert info["host_ns"] is None and info["dut_ip"] is None
        assert re.fullmatch(r"hv[0-9a-f]+", info["host_if"])
        link = json.loads(subprocess.run(["ip", "-j", "-d", "addr", "show", "dev", info["host_if"]],
                                         capture_output=True, text=True, timeout=10, check=True).stdout)[0]  # fmt: skip
        assert link["linkinfo"]["info_kind"] == "veth"
        assert not [a for a in link.get("addr_info", []) if a.get("family") == "inet"]
    finally:
        hil("stop", "--name", name)
        shutil.rmtree(state_dir(name), ignore_errors=True)
    gone = subprocess.run(["ip", "link", "show", "dev", info["host_if"]], capture_output=True, timeout=10, check=False)
    assert gone.returncode != 0
    assert not (NETNS_DIR / info["dut_ns"]).exists()
