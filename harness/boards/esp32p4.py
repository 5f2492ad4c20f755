"""`Esp32P4Board`: a real ESP32-P4 (Waveshare P4-Nano) on a serial port, flashed with esptool.

What comes from where:
- The build directory is read directly (flasher_args.json, project_description.json,
  config/sdkconfig.json), so the harness flashes exactly the files and settings `idf.py flash` would,
  without pytest-embedded's plugin (docs/ARCHITECTURE.md says why).
- Flashing runs the real esptool as a child process *before* the console opens (the console monitor
  holds the port exclusively), with ``--after no-reset``: the harness then pulses reset itself with
  the console already open, so no boot line is lost. The esptool baud rate honours ``--esptool-baud``
  (default: ``$ESPBAUD``, else 921600).
- Reset is the classic two-transistor auto-reset circuit driven by DTR/RTS on the open console port.
- The console is the harness's `ConsoleMonitor` (pyserial, survives USB re-enumeration and resets).
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.boards.board import BOOT_TIMEOUT_S, Board, BootInfo, BuildInfo
from harness.boards.kinds import BoardKind, KindOptions
from harness.console.monitor import ConsoleLine, ConsoleMonitor
from harness.errors import BoardError, ConfigError, DutTimeoutError
from harness.firmware.footprint import FirmwareFootprint, read_footprint
from harness.paths import firmware_dir

CONSOLE_BAUD = 115200
DEFAULT_ESPTOOL_BAUD = 921600
ESPTOOL_TIMEOUT_S = 180.0
READ_MAC_TIMEOUT_S = 30.0
RESET_PULSE_S = 0.1  # EN held low this long: the RC on EN needs ~tens of ms to discharge

# USB bridges a P4-Nano (or a similar board) shows up with. The P4-Nano carries a WCH CH343.
USB_BRIDGES: dict[tuple[int, int], str] = {
    (0x1A86, 0x55D3): "WCH CH343 (ESP32-P4-Nano)",
    (0x1A86, 0x55D4): "WCH CH9102",
    (0x1A86, 0x7523): "WCH CH340",
}

REV_CONFIG = "CONFIG_ESP32P4_SELECTS_REV_LESS_V3"
REV_FIX = (
    f"ESP32-P4 v0.x/v1.x and v3.x need different builds: for a v1.x chip set {REV_CONFIG}=y "
    "(idf.py menuconfig -> Component config -> Hardware Settings -> Chip revision), for a v3.x chip leave it unset "
    "and rebuild (`hil build` or `idf.py build`)"
)


def parse_chip_rev(text: str) -> int:
    """`v1.0`, `1.0`, `v3.1` -> 100, 100, 301 (esptool's major*100+minor)."""
    match = re.fullmatch(r"v?(\d+)\.(\d{1,2})", str(text).strip())
    if not match:
        raise ConfigError(f"chip revision {text!r} is not of the form v<major>.<minor>, e.g. v1.0 or v3.1")
    return int(match.group(1)) * 100 + int(match.group(2))


def truthy(value: Any) -> bool:
    """A flag's value: True/False, or pytest-embedded's y/yes/true strings when its plugin owns the option."""
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("y", "yes", "true", "1")


# --- finding the port ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortCandidate:
    """A serial port that may be the board."""

    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    description: str

    @property
    def bridge(self) -> str | None:
        """The known USB bridge this port is, or None."""
        if self.vid is None or self.pid is None:
            return None
        return USB_BRIDGES.get((self.vid, self.pid))

    def label(self) -> str:
        """One-line description for error messages and `hil doctor`."""
        ids = f"{self.vid:04x}:{self.pid:04x}" if self.vid is not None and self.pid is not None else "no USB id"
        serial = f" serial {self.serial_number}" if self.serial_number else ""
        return f"{self.device} ({ids}{serial}, {self.bridge or self.description or 'unknown'})"


def list_serial_ports(ports: Iterable[Any] | None = None) -> list[PortCandidate]:
    """Every serial port pyserial sees (or the given ListPortInfo-like objects), as candidates."""
    if ports is None:
        from serial.tools import list_ports

        ports = list_ports.comports()
    return [
        PortCandidate(p.device, p.vid, p.pid, p.serial_number, p.description or "")
        for p in sorted(ports, key=lambda p: p.device)
    ]


def board_ports(ports: Iterable[PortCandidate]) -> list[PortCandidate]:
    """The ports whose USB id is a bridge a P4 board uses, CH343 first."""
    found = [p for p in ports if p.bridge is not None]
    return sorted(found, key=lambda p: (p.bridge != USB_BRIDGES[(0x1A86, 0x55D3)], p.device))


def resolve_port(
    port: str | None,
    port_mac: str | None = None,
    *,
    ports: Iterable[Any] | None = None,
    read_mac: Callable[[str], str] | None = None,
) -> str:
    """Decide which port the board is on.

    Args:
        port: a device path, a pyserial URL (`rfc2217://host:port`) or None to auto-detect.
        port_mac: the board's base MAC; the port whose chip reports it is chosen (each candidate is probed).
        ports: ListPortInfo-like objects to choose from (default: what pyserial lists now).
        read_mac: how to read a port's MAC (default: `esptool read-mac`).

    Raises:
        BoardError: no port, several possible ports, or no port with that MAC; the message lists what was found.
    """
    read_mac = read_mac or esptool_read_mac
    wanted = normalise_mac(port_mac) if port_mac else None
    if port:
        if wanted and not port.startswith(("rfc2217://", "socket://")):
            found = read_mac(port)
            if normalise_mac(found) != wanted:
                raise BoardError(
                    f"the chip on {port} has MAC {found}, not {port_mac}: fix --port or --port-mac (or the board's "
                    "`port`/`port_mac` in hil.toml)"
                )
        return port
    every = list_serial_ports(ports)
    candidates = board_ports(every)
    seen = "; ".join(p.label() for p in every) or "no serial ports at all"
    if wanted:
        probed: list[str] = []
        for candidate in candidates or every:
            try:
                mac = read_mac(candidate.device)
            except BoardError as exc:
                probed.append(f"{candidate.device}: {exc}")
                continue
            if normalise_mac(mac) == wanted:
                return candidate.device
            probed.append(f"{candidate.device}: MAC {mac}")
        raise BoardError(
            f"no serial port has a chip with MAC {port_mac} (probed: {'; '.join(probed) or 'none'}). "
            "Check the USB cable "
            "and the MAC (`esptool read-mac`), or give --port"
        )
    if len(candidates) == 1:
        return candidates[0].device
    if not candidates:
        raise BoardError(
            "no ESP32-P4 board found: no USB serial port with a CH343/CH340/CH9102 bridge (1a86:55d3, 1a86:7523, "
            f"1a86:55d4). Ports seen: {seen}. Plug the board's USB-C UART port in, or give --port (or "
            "rfc2217://host:port for a remote board)"
        )
    raise BoardError(
        f"several possible boards: {'; '.join(p.label() for p in candidates)}. Choose one with --port, or with "
        "--port-mac <board MAC> (or `port`/`port_mac` in hil.toml)"
    )


def normalise_mac(mac: str) -> str:
    """`60-55-F9-F0-00-01` -> `60:55:f9:f0:00:01`; raise ConfigError for anything else."""
    parts = re.split(r"[:\-]", mac.strip().lower())
    if len(parts) != 6 or not all(re.fullmatch(r"[0-9a-f]{2}", p) for p in parts):
        raise ConfigError(f"MAC address {mac!r} is not six hex bytes like 60:55:f9:f0:00:01")
    return ":".join(parts)


def esptool_read_mac(port: str, before: str = "default-reset") -> str:
    """The chip's base MAC via `esptool read-mac` (resets the board into the ROM loader and back)."""
    output = run_esptool(
        ["--port", port, "--before", before, "--after", "hard-reset", "read-mac"], timeout=READ_MAC_TIMEOUT_S, port=port
    )
    match = re.search(r"MAC:\s*([0-9a-fA-F:]{17})", output)
    if not match:
        raise BoardError(f"esptool read-mac on {port} printed no MAC; its output ended with: {output[-300:]!r}")
    return match.group(1).lower()


# --- esptool and its failures -----------------------------------------------------------------------------


def run_esptool(args: Sequence[str], *, timeout: float, port: str, env: dict[str, str] | None = None) -> str:
    """Run `python -m esptool <args>`; return its output, or raise BoardError explaining the failure."""
    command = [sys.executable, "-m", "esptool", *args]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BoardError(
            f"esptool did not finish within {timeout:g} s on {port}: is the board powered and the cable a data cable?"
        ) from exc
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise BoardError(explain_esptool_failure(output, port))
    return output


def explain_esptool_failure(output: str, port: str) -> str:
    """Turn esptool's failure output into one message that says what is wrong and how to fix it."""
    tail = esptool_said(output)
    if "requires chip revision" in output:
        refusal = re.search(r"(\S+ requires chip revision [^)\n]*\))", output)
        said = refusal.group(1) if refusal else "an image built for another chip revision"
        return f"the build does not fit this chip: {said}. {REV_FIX}"
    busy = (
        "Could not exclusively lock port",
        "Resource temporarily unavailable",
        "Device or resource busy",
        "[Errno 16]",
        "[Errno 11]",
    )
    if any(text in output for text in busy):
        return busy_port_message(port)
    if "Permission denied" in output:
        return (
            f"no permission to open {port}: add the user to the port's group (`sudo usermod -aG dialout $USER`, then "
            "log in again) or install the udev rule from ci/setup-runner.sh"
        )
    if re.search(r"This chip is (ESP32-\S+),? not", output):
        chip = re.search(r"This chip is (ESP32-[A-Z0-9]+)", output)
        return f"the chip on {port} is {chip.group(1) if chip else 'another chip'}, not an ESP32-P4: wrong --port?"
    if "Failed to connect" in output or "No serial data received" in output:
        return (
            f"esptool could not reach the ROM loader on {port}: check the port and cable; if the board's auto-reset "
            "does not work, hold BOOT, tap RESET, release BOOT and retry. esptool said: " + tail
        )
    if "could not open port" in output or "No such file or directory" in output:
        return f"serial port {port} does not exist (unplugged?): give the right --port or let the harness auto-detect"
    return f"esptool failed on {port}: {tail}"


def esptool_said(output: str) -> str:
    """The gist of esptool's failure: its `A fatal error occurred` line, or its (boxed) usage error, unboxed."""
    fatal = re.search(r"A fatal error occurred: ([^\n]+)", output)
    if fatal:
        return fatal.group(1).strip()
    lines = [re.sub(r"[\u2500-\u257f]+", " ", line).strip() for line in output.strip().splitlines()]
    lines = [line for line in lines if line and line != "Error"]
    error_at = next((i for i, line in enumerate(lines) if line.startswith(("Invalid value", "Error:"))), None)
    kept = lines[error_at:] if error_at is not None else lines[-3:]
    return re.sub(r"\s+", " ", " ".join(kept))[-400:]


def port_holders(device: str) -> list[tuple[int, str]]:
    """(pid, command) of every process that has ``device`` open, read from /proc (what `fuser` does)."""
    try:
        target = os.path.realpath(device)
    except OSError:
        return []
    holders: list[tuple[int, str]] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fd_dir = f"/proc/{entry.name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                        cmd = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    holders.append((int(entry.name), cmd or "?"))
                    break
            except OSError:
                continue
    return holders


def busy_port_message(port: str) -> str:
    """The error for a port another program holds, naming the program when /proc tells."""
    holders = [(pid, cmd) for pid, cmd in port_holders(port) if pid != os.getpid()]
    who = ", ".join(f"pid {pid} `{cmd[:80]}`" for pid, cmd in holders) or "another process (not visible in /proc)"
    return (
        f"serial port {port} is busy: held by {who}. Close that program (idf.py monitor, screen, minicom, a "
        "second harness run) and retry"
    )


# --- what the console says after a reset -----------------------------------------------------------------

_DOWNLOAD_MODE = re.compile(r"boot:0x[0-9a-fA-F]+ \(DOWNLOAD|waiting for download")
_REV_REFUSED = re.compile(r"Image requires chip rev [<>]=? ?v?[0-9.]+, but chip is v?[0-9.]+")


def boot_problem(lines: Iterable[ConsoleLine | str]) -> str | None:
    """A diagnosis of a boot that did not reach the firmware (download mode, revision refusal), or None."""
    for line in lines:
        text = line if isinstance(line, str) else line.text
        if _DOWNLOAD_MODE.search(text):
            return (
                f"the board is stuck in download mode (console: {text.strip()!r}): BOOT/IO0 is held low at reset. "
                "Release the BOOT button (or whatever pulls the strap low) and retry; if this happens after every "
                "harness reset, the USB bridge's DTR/RTS wiring differs from the usual auto-reset circuit"
            )
        match = _REV_REFUSED.search(text)
        if match:
            return f"the bootloader refused the app: {match.group(0)}. {REV_FIX}"
    return None


# --- the build ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirmwareBuild:
    """What esptool writes, read from an ESP-IDF build directory."""

    build_dir: Path
    chip: str
    flash_files: tuple[tuple[int, Path], ...]
    write_flash_args: tuple[str, ...]
    stub: bool
    sdkconfig: dict[str, Any]
    elf: Path | None

    @classmethod
    def load(cls, app_path: Path | str | None, build_dir: Path | str | None) -> FirmwareBuild:
        """Read ``build_dir`` (absolute, or relative to ``app_path``) as `idf.py flash` does.

        flasher_args.json says what to write where and with which esptool settings; project_description.json
        names the target and the ELF; config/sdkconfig.json holds the configuration (the chip revision range).
        """
        app_path = Path(app_path or firmware_dir() / "hil_app")
        build = Path(build_dir or "build")
        path = build if build.is_absolute() else app_path / build
        fix = f"build the firmware first: `hil build` or `idf.py -C {app_path} build`, or point --build-dir at a build"
        if not path.is_dir():
            raise BoardError(f"no build directory {path}: {fix}")
        if not (path / "flasher_args.json").is_file():
            raise BoardError(f"{path} has no flasher_args.json (not an ESP-IDF build, or it did not finish): {fix}")
        flasher = _read_json(path / "flasher_args.json", fix)
        description = _read_json(path / "project_description.json", fix, required=False)
        sdkconfig = _read_json(path / "config" / "sdkconfig.json", fix, required=False)
        try:
            flash_files = tuple(
                sorted(
                    (int(str(offset), 0), path / str(name)) for offset, name in flasher.get("flash_files", {}).items()
                )
            )
        except (ValueError, AttributeError) as exc:
            raise BoardError(f"{path}/flasher_args.json has a malformed flash_files table ({exc}): {fix}") from exc
        if not flash_files:
            raise BoardError(f"{path}/flasher_args.json lists no files to flash: {fix}")
        missing = [str(file) for _, file in flash_files if not file.is_file()]
        if missing:
            raise BoardError(f"{path}/flasher_args.json names files that are not there ({', '.join(missing)}): {fix}")
        extra = flasher.get("extra_esptool_args", {})
        chip = extra.get("chip") or description.get("target") or sdkconfig.get("IDF_TARGET") or "unknown"
        return cls(
            build_dir=path,
            chip=str(chip),
            flash_files=flash_files,
            write_flash_args=tuple(str(arg) for arg in flasher.get("write_flash_args", [])),
            stub=extra.get("stub", True) is not False,
            sdkconfig=sdkconfig,
            elf=_find_elf(path, description),
        )

    def check_chip(self, chip_rev: str | None) -> None:
        """Refuse, before flashing, a build for another chip or (when the revision is known) another revision range."""
        if self.chip.replace("-", "").lower() != "esp32p4":
            raise BoardError(
                f"the build in {self.build_dir} is for {self.chip}, not esp32p4: `idf.py set-target esp32p4`"
            )
        if chip_rev is None or not self.sdkconfig:
            return
        rev = parse_chip_rev(chip_rev)
        less_v3 = bool(self.sdkconfig.get("ESP32P4_SELECTS_REV_LESS_V3"))
        if less_v3 and rev >= 300:
            raise BoardError(
                f"the build has {REV_CONFIG}=y (for v0.x/v1.x chips) but the board is {chip_rev}. {REV_FIX}"
            )
        if not less_v3 and rev < 300:
            raise BoardError(f"the build is for chip revision v3.x but the board is {chip_rev}. {REV_FIX}")

    def esptool_args(self, port: str, baud: int, before: str = "default-reset") -> list[str]:
        """The write-flash command line (after ``python -m esptool``); the board is left in the loader."""
        args = ["--chip", self.chip, "--port", port, "--baud", str(baud), "--before", before, "--after", "no-reset"]
        if not self.stub:
            args.append("--no-stub")
        args += ["write-flash", *self.write_flash_args]
        for offset, path in self.flash_files:
            args += [hex(offset), str(path)]
        return args


# --- the board ---------------------------------------------------------------------------------------------


class Esp32P4Board(Board):
    """A real ESP32-P4 running the HIL firmware.

    Args:
        log_dir: where the console log goes.
        port: device path or `rfc2217://host:port`; None auto-detects (USB bridge id, or ``port_mac``).
        port_mac: the board's base MAC, to pick its port among several.
        app_path, build_dir: the ESP-IDF build to flash (`build_dir` absolute or under `app_path`).
        skip_flash: boot what is already on the board.
        chip_rev: the chip revision (`v1.0`, `v3.1`), checked against the build before flashing.
        esptool_baud: flashing baud rate (default: $ESPBAUD or 921600).
        before: esptool's `--before` (`no-reset` for a board that is already in its ROM loader).
        reset_line: how to pulse EN when the port has no modem lines (a pty); default: DTR/RTS.
    """

    kind = "esp32p4"

    def __init__(
        self,
        log_dir: Path,
        *,
        port: str | None = None,
        port_mac: str | None = None,
        app_path: Path | str | None = None,
        build_dir: Path | str | None = None,
        skip_flash: bool = False,
        chip_rev: str | None = None,
        esptool_baud: int | None = None,
        before: str = "default-reset",
        reset_line: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(log_dir)
        if chip_rev is not None:
            parse_chip_rev(chip_rev)
        self.requested_port = port
        self.port_mac = port_mac
        self.app_path = app_path
        self.build_dir = build_dir
        self.skip_flash = skip_flash
        self.chip_rev = chip_rev
        self.esptool_baud = esptool_baud or int(os.environ.get("ESPBAUD", DEFAULT_ESPTOOL_BAUD))
        self.before = before
        self.reset_line = reset_line
        self.build: FirmwareBuild | None = None
        self.flash_log: str = ""
        self._port = ""

    @property
    def port(self) -> str:
        """The console port in use (empty before `start()`)."""
        return self._port

    def start(self, wait_online: bool = True) -> None:
        """Find the port, flash the build (unless skipped), open the console and boot the board."""
        self._port = resolve_port(self.requested_port, self.port_mac)
        if not self.skip_flash:
            self.flash()
        self.console = ConsoleMonitor(self._port, self.log_dir / "console.log", baudrate=CONSOLE_BAUD)
        try:
            self.console.start()
        except BoardError as exc:
            if _is_busy(exc):
                raise BoardError(busy_port_message(self._port)) from exc
            raise
        self.reset(wait_online=wait_online)

    def flash(self) -> str:
        """Write the build with esptool (console closed); return esptool's output."""
        if self.console is not None:
            raise BoardError("flash() needs the console port: call it before start() opens the console")
        self.build = FirmwareBuild.load(self.app_path, self.build_dir)
        self.build.check_chip(self.chip_rev)
        port = self._port or resolve_port(self.requested_port, self.port_mac)
        self.flash_log = run_esptool(
            self.build.esptool_args(port, self.esptool_baud, self.before), timeout=ESPTOOL_TIMEOUT_S, port=port
        )
        (self.log_dir / "esptool-flash.log").parent.mkdir(parents=True, exist_ok=True)
        (self.log_dir / "esptool-flash.log").write_text(self.flash_log, encoding="utf-8")
        return self.flash_log

    def hard_reset(self) -> None:
        """Pulse EN through the auto-reset circuit (RTS low->EN low, with DTR released so IO0 stays high)."""
        if self.reset_line is not None:
            self.reset_line()
            return
        link = self._serial()
        try:
            pulse_reset(link)
        except OSError as exc:
            if exc.errno == errno.ENOTTY:
                raise BoardError(
                    f"{self._port} has no DTR/RTS lines (a pty?): the harness cannot reset the board through it. "
                    "Use the board's USB-UART port, or an rfc2217:// server that forwards DTR/RTS"
                ) from exc
            raise BoardError(f"cannot reset the board through DTR/RTS on {self._port}: {exc}") from exc

    def _serial(self) -> Any:
        # The monitor owns the only handle on the port (it opens it exclusively); the modem lines are
        # set on that same handle.
        link = getattr(self.monitor, "_serial", None)
        if link is None:
            raise BoardError(f"console {self._port} is not open")
        return link

    def follow_boot(
        self, mark: int, t_reset: float, *, wait_online: bool = True, timeout: float = BOOT_TIMEOUT_S
    ) -> BootInfo:
        """As `Board.follow_boot`, but a boot stuck in download mode or refused by the bootloader is explained."""
        try:
            return super().follow_boot(mark, t_reset, wait_online=wait_online, timeout=timeout)
        except DutTimeoutError as exc:
            problem = boot_problem(self.monitor.slice(mark))
            if problem:
                raise BoardError(problem) from exc
            raise

    def identity(self) -> dict[str, Any]:
        """Board identity for the results file."""
        return {**super().identity(), "chip_rev": self.chip_rev or self.hello.get("chip_rev", "")}

    def firmware_build(self) -> BuildInfo:
        """The build flashed in this run; with --skip-autoflash, the one the options name (if it is there)."""
        build = self.build
        if build is None:
            try:
                build = FirmwareBuild.load(self.app_path, self.build_dir)
            except BoardError:
                return BuildInfo()
        return BuildInfo(build.build_dir, build.elf, build.sdkconfig)

    def firmware_footprint(self) -> FirmwareFootprint | None:
        """The footprint `hil build` saved beside the image flashed in this run (None when nothing was flashed)."""
        return read_footprint(self.build.build_dir) if self.build is not None else None

    def close(self) -> None:
        """Close the console (the board keeps running)."""
        if self.console is not None:
            self.console.stop()


def _read_json(path: Path, fix: str, *, required: bool = True) -> dict[str, Any]:
    if not path.is_file() and not required:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BoardError(f"cannot read {path} ({exc}): {fix}") from exc
    if not isinstance(data, dict):
        raise BoardError(f"{path} is not a JSON object: {fix}")
    return data


def _find_elf(build: Path, description: dict[str, Any]) -> Path | None:
    """The app's ELF: project_description.json's `app_elf`, else the build directory's only *.elf."""
    named = description.get("app_elf")
    if named and (build / str(named)).is_file():
        return build / str(named)
    elves = sorted(build.glob("*.elf"))
    return elves[0] if len(elves) == 1 else None


def pulse_reset(link: Any, pulse_s: float = RESET_PULSE_S) -> None:
    """Reset into the app through the two-transistor circuit: EN low with IO0 high, then release EN.

    With the usual wiring, EN = low only when RTS is asserted and DTR is not, and IO0 = low only when DTR is
    asserted and RTS is not; so DTR stays released throughout and IO0 reads high when EN rises.
    """
    link.dtr = False
    link.rts = True
    time.sleep(pulse_s)  # the reset pulse itself: EN must stay low long enough to reset the chip
    link.rts = False


def _is_busy(exc: BaseException) -> bool:
    text = str(exc)
    return any(s in text for s in ("Errno 16", "Errno 11", "busy", "exclusively lock"))


# --- the board kind -------------------------------------------------------------------------------------------

# Spellings pytest-embedded's plugin registers itself; when it is loaded they are its options (its
# --skip-autoflash then takes y/n), otherwise the harness registers them (--skip-autoflash is a flag).
EMBEDDED_SPELLINGS = ("--port", "--port-mac", "--app-path", "--build-dir", "--skip-autoflash", "--esptool-baud")


class Esp32P4Kind(BoardKind):
    """A real ESP32-P4 on a serial port, flashed with esptool, cabled to a NIC of this machine."""

    name = "esp32p4"
    summary = "a real ESP32-P4 (Waveshare P4-Nano) on a serial port and a NIC"
    uses_board_tables = True

    def add_options(self, group: KindOptions) -> None:
        """Serial port, build, flashing, chip revision, the NIC and which [boards.<name>] table applies."""
        if not group.embedded_plugin:
            group.addoption("--port", default=None,
                            help="serial port of the board, or rfc2217://host:port (default: $ESPPORT, the board's "
                            "table in hil.toml, else auto-detect)")  # fmt: skip
            group.addoption("--port-mac", default=None, help="the board's base MAC, to pick its port among several")
            group.addoption("--app-path", default=None, help="ESP-IDF project directory (default firmware/hil_app)")
            group.addoption("--build-dir", default=None,
                            help="ESP-IDF build directory, absolute or under --app-path (default build)")  # fmt: skip
            group.addoption("--skip-autoflash", action="store_true", default=False,
                            help="boot what is already on the board instead of flashing the build")  # fmt: skip
            group.addoption("--esptool-baud", default=None, help="flashing baud rate (default $ESPBAUD or 921600)")
        group.addoption("--eth-iface", default=None,
                        help="host NIC cabled to the board's Ethernet port; it is moved into the run's namespace "
                        "and restored afterwards")  # fmt: skip
        group.addoption("--chip-rev", default=None,
                        help="the board's chip revision, e.g. v1.0 or v3.1; checked against the build "
                        "before flashing")  # fmt: skip
        group.addoption("--board-name", default=None,
                        help="which [boards.<name>] table of hil.toml describes the board "
                        "(default: the only one)")  # fmt: skip

    def check_options(self, options: Any, config: Any) -> None:
        """The board table exists, the chip revision and the baud rate parse."""
        table = config.board_table(getattr(options, "board_name", None))
        chip_rev = getattr(options, "chip_rev", None) or table.chip_rev
        if chip_rev:
            parse_chip_rev(chip_rev)
        baud = getattr(options, "esptool_baud", None)
        if baud not in (None, "") and not str(baud).isdigit():
            raise ConfigError(f"--esptool-baud {baud!r} is not a number of bits per second, e.g. 921600")

    def make_lab(self, options: Any, config: Any, run_id: str, log_dir: Path) -> Any:
        """The NIC lab: `--eth-iface` over the board's `eth_iface` over `[nic].iface` in hil.toml."""
        iface = getattr(options, "eth_iface", None) or config.nic_iface(getattr(options, "board_name", None))
        return nic_lab(iface or "", options, config, run_id, log_dir)

    def make_board(self, options: Any, config: Any, lab: Any, log_dir: Path) -> Esp32P4Board:
        """The board from the options, falling back to its `[boards.<name>]` table (options win)."""
        return board_from_options(options, config, log_dir)


def nic_lab(
    iface: str, options: Any, config: Any, run_id: str, log_dir: Path, lab_class: Any = None, **extra: Any
) -> Any:
    """The NIC lab of a real board on ``iface``, addressed and checked as hil.toml's `[nic]` says.

    Args:
        lab_class: a `NicLab` subclass to make (default: `NicLab`); ``extra`` goes to its constructor.
    """
    from harness.lab.base import LabAddressing
    from harness.lab.nic import NicLab

    nic = config.nic
    addressing = LabAddressing(str(nic.subnet), str(nic.host_ip), str(nic.pool_start), str(nic.pool_end))
    return (lab_class or NicLab)(
        iface, run_id=run_id, addressing=addressing, mtu=config.link.mtu, log_dir=log_dir,
        force=bool(getattr(options, "dhcp_force", False)), expect_speed_mbit=nic.expect_speed_mbit,
        expect_duplex=nic.expect_duplex, **extra,
    )  # fmt: skip


def board_from_options(
    options: Any,
    config: Any,
    log_dir: Path,
    reset_line: Callable[[], None] | None = None,
    *,
    port: str | None = None,
    board_class: type[Esp32P4Board] = Esp32P4Board,
    **extra: Any,
) -> Esp32P4Board:
    """Build the board from pytest options, falling back to the `[boards.<name>]` table of hil.toml.

    Command-line options win over the environment (`$ESPPORT`, as ESP-IDF's tools read it), which wins over
    the file, which wins over defaults. ``port`` (where something else, such as a labgrid place, decided the
    console) wins over all of them; ``extra`` goes to ``board_class``.
    """
    table = config.board_table(getattr(options, "board_name", None))
    environment = {"port": os.environ.get("ESPPORT")}

    def pick(option: str, key: str) -> Any:
        for value in (getattr(options, option, None), environment.get(option)):
            if value not in (None, ""):
                return value
        return getattr(table, key)

    baud = getattr(options, "esptool_baud", None)
    return board_class(
        log_dir,
        port=port or pick("port", "port"),
        port_mac=pick("port_mac", "port_mac"),
        app_path=pick("app_path", "app_path"),
        build_dir=pick("build_dir", "build_dir"),
        skip_flash=truthy(getattr(options, "skip_autoflash", None)),
        chip_rev=pick("chip_rev", "chip_rev"),
        esptool_baud=int(baud) if baud else None,
        reset_line=reset_line,
        **extra,
    )


BOARD_KIND = Esp32P4Kind()
